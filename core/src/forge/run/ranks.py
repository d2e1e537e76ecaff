"""Which process of a multi-process run this is (torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``GROUP_RANK`` (the node), ``LOCAL_WORLD_SIZE``; one process: 0 of 1)."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train this run (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def describe() -> dict[str, Any]:
    """This process's place in the run, from torchrun's environment: what the manifest records per rank."""
    env = os.environ
    local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
    return {
        "rank": rank(),
        "local_rank": int(env.get("LOCAL_RANK", "0")),
        "node_rank": int(env.get("GROUP_RANK", "0")),
        "world_size": world_size(),
        "nnodes": max(1, world_size() // max(1, local_world)),
        "nproc_per_node": local_world,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def launch_facts() -> dict[str, Any] | None:
    """How a multi-process run was launched (rank 0's view), for the manifest; None on one process."""
    if world_size() == 1:
        return None
    me = describe()
    env = os.environ
    return {"world_size": me["world_size"], "nnodes": me["nnodes"], "nproc_per_node": me["nproc_per_node"],
            "master_addr": env.get("MASTER_ADDR"), "master_port": env.get("MASTER_PORT"),
            "rdzv_id": env.get("TORCHELASTIC_RUN_ID")}


def gather() -> list[dict[str, Any]] | None:
    """Every rank's :func:`describe`, in rank order, when the recipe set up a torch process group (all ranks must
    call this at the same point); None otherwise. Never imports torch itself."""
    if world_size() == 1:
        return None
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, describe())
    return out
