"""Where an adapter's base model may be loaded from: the one policy every loader of a manifest's ``base_model``
goes through (``forge serve``, ``forge export``, ``forge eval``/``predict``, ``rlhf`` starting from an adapter).

A manifest (``forge.json``) is data that anyone who can write the artifact directory can edit, so its ``base_model``
is not followed wherever it points:

- an alias (``smollm2-135m-instruct``) or a Hub id (``org/name`` naming no local path): loaded as named;
- a path inside the artifact's own directory: loaded;
- any other local path (absolute, ``../..``, a symlink leading out, a relative path found from the working
  directory) is loaded only when its real path (symlinks resolved) lies under a directory the operator listed in
  ``FORGE_MODEL_DIRS`` (``os.pathsep``-separated), or when the manifest carries a seal that this user's own
  training run made for that real path (an HMAC-SHA256 keyed with ``~/.config/forge/manifest-key``, created mode
  0600 by the first training run): train → eval → export → serve on one box needs no step; an artifact trained by
  another user or on another box needs ``FORGE_MODEL_DIRS``. Anything else is one line, exit 2.

    checked_base_model(artifact)   # → "smollm2-135m-instruct", "org/name" or "/data/models/llama-1b"
    resolve_base_model(artifact)   # → what from_pretrained loads, and facts about it (provider.resolve_model)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forge import seals
from forge.artifacts import MANIFEST, Artifact
from forge.errors import ForgeError

MODEL_DIRS_ENV = "FORGE_MODEL_DIRS"
SEAL_FIELD = "base_model_seal"


def _local_base(model: str) -> Path | None:
    """``model`` as a local path (GGUF file or model directory) when it names one, else ``None`` (alias, Hub id)."""
    from forge_hf.provider import ALIASES

    if model in ALIASES:
        return None
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or path.suffix == ".gguf":
        return path
    return None


def base_model_fields(model: str) -> dict[str, Any]:
    """Manifest fields for the base model a training run loaded: ``base_model`` as the config named it and, for a
    local path, ``base_model_seal`` ``{"path": real path, "hmac": ...}`` so this user's later loads accept it."""
    fields: dict[str, Any] = {"base_model": model}
    local = _local_base(model)
    made = seals.seal(local, "base_model") if local is not None and local.exists() else None
    if made is not None:
        fields[SEAL_FIELD] = made
    return fields


def model_dirs() -> list[Path]:
    """The directories ``FORGE_MODEL_DIRS`` lists, real paths."""
    entries = os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep)
    return [Path(entry).expanduser().resolve() for entry in entries if entry.strip()]


def _sealed_path(manifest: dict[str, Any]) -> Path | None:
    """The real path the manifest's ``base_model_seal`` vouches for (:func:`forge.seals.sealed_path`)."""
    return seals.sealed_path(manifest.get(SEAL_FIELD), "base_model")


def _names(sealed: Path, name: str) -> bool:
    """Whether ``name`` (as the training config wrote it, maybe relative) can be the sealed path: its last parts."""
    parts = [p for p in Path(os.path.normpath(Path(name).expanduser())).parts if p not in ("..", ".", os.sep)]
    return bool(parts) and list(sealed.parts[-len(parts):]) == parts


def checked_base_model(artifact: Artifact) -> str:
    """What ``provider.resolve_model`` may load for ``artifact``'s ``base_model``: the alias or Hub id as written, or
    the real path of a local base the policy accepts (see the module docstring); otherwise a one-line
    :class:`ForgeError` naming the manifest, the field, the path and how to allow it."""
    origin = artifact.path / MANIFEST
    name = artifact.manifest.get("base_model")
    if not isinstance(name, str) or not name.strip():
        raise ForgeError(f"{origin}: base_model: missing; an adapter's manifest names the model it was trained on")
    from forge_hf.provider import ALIASES

    if name in ALIASES:
        return name
    sealed = _sealed_path(artifact.manifest)
    path = Path(name).expanduser()
    in_tree = artifact.path / path
    if not path.is_absolute() and in_tree.exists():
        local: Path | None = in_tree
    else:
        local = _local_base(name)
    if (local is None or not local.exists()) and sealed is not None and _names(sealed, name):
        return str(sealed)  # recorded relative to the training run's working directory
    if local is None:
        return name  # an alias or a Hub id
    real = local.resolve()
    if (real.is_relative_to(artifact.path.resolve()) or real == sealed
            or any(real.is_relative_to(allowed) for allowed in model_dirs())):
        return str(real)
    if sealed is not None:
        why = f" (its training run recorded {sealed})"
    else:
        why = " (its seal is not from this user's training runs)" if SEAL_FIELD in artifact.manifest else ""
    narrowest = real.parent if real.is_file() else real
    raise ForgeError(f"{origin}: base_model {name!r} is a local path outside the artifact ({real}){why}; refusing to "
                     f"load it. To trust it, list it in {MODEL_DIRS_ENV} (e.g. {MODEL_DIRS_ENV}={narrowest}); see "
                     "docs/serving.md#base-models")


def resolve_base_model(artifact: Artifact) -> tuple[str, dict[str, Any]]:
    """``provider.resolve_model`` of :func:`checked_base_model`: the source ``from_pretrained`` loads and facts."""
    from forge_hf.provider import resolve_model

    return resolve_model(checked_base_model(artifact))
