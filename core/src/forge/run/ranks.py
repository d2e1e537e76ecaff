"""Which process of a multi-process run this is (torchrun sets ``RANK`` and ``WORLD_SIZE``; one process: 0 of 1)."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train this run (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
