"""What the ``classification`` and ``retrieval`` suites read before they run, and how they run a model over texts:
their options, the column names the training run used, the held-out split the recipe kept, and batches that show
progress and stop when asked.

    check_options(request.options, OPTIONS, "retrieval")
    data = Path(request.data) if request.data is not None else heldout_split(artifact, "a pairs file")
    vectors = in_batches(texts, 32, request, "embedding", embed)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from forge import Artifact, ConfigError, EvalRequest, ForgeError
from forge.artifacts import parent_directory


def check_options(options: dict[str, Any], allowed: Iterable[str], suite: str) -> None:
    """Refuse a ``--set`` key the suite does not take, naming those it does."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: the {suite} suite takes {', '.join(sorted(allowed))}")


def limit_option(options: dict[str, Any]) -> int | None:
    """``--set limit=N`` (at least 1): evaluate the first N records; ``None``: all."""
    from forge_hf.predict import int_option

    return int_option(options, "limit", 1) if "limit" in options else None


def training_config(artifact: Artifact) -> dict[str, Any]:
    """The config of the run that trained ``artifact`` (for an export, of the artifact it was exported from)."""
    config = artifact.manifest.get("config") or {}
    parent = parent_directory(artifact.path, artifact.manifest)
    if not config and parent and (parent / "forge.json").is_file():
        config = json.loads((Path(parent) / "forge.json").read_text(encoding="utf-8")).get("config") or {}
    return dict(config)


def heldout_split(artifact: Artifact, give: str) -> Path:
    """The held-out split the recipe kept (``heldout.jsonl``), beside the artifact or the one it was exported from;
    without one, a one-line error asking for ``--data`` (``give``: what kind of file, e.g. "a labelled file")."""
    candidates = [artifact.path / "heldout.jsonl"]
    parent = parent_directory(artifact.path, artifact.manifest)
    if parent:
        candidates.append(parent / "heldout.jsonl")
    for candidate in candidates:
        if candidate.is_file() and candidate.stat().st_size:
            return candidate
    raise ForgeError(f"{artifact.path}: no held-out split kept with this artifact (trained with eval_split=0?); "
                     f"give {give}: --data FILE")


def in_batches(texts: list[str], batch_size: int, request: EvalRequest, desc: str,
               run: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``run`` over ``texts`` in batches, rows concatenated; a progress bar, and a stop request honoured between
    batches (``KeyboardInterrupt``)."""
    chunks = []
    bar = request.progress(total=len(texts), desc=desc)
    for start in range(0, len(texts), batch_size):
        if request.should_stop():
            raise KeyboardInterrupt
        part = texts[start:start + batch_size]
        chunks.append(run(part))
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    return np.concatenate(chunks)
