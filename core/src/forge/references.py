"""What a command's ARTIFACT argument may name, resolved to an artifact.

    runs/sft-1                 a completed run directory: its artifact (or, when the command does not take that
                               kind, an export of it under runs/sft-1/exports/ that it does take)
    runs/sft-1/artifact        an artifact directory
    runs/sft-1/exports/onnx    an export directory (an artifact too)
    models:/NAME/VERSION       a version of a registered model (forge.registry)
    models:/NAME@ALIAS         the version an alias points to

``forge eval``, ``forge serve`` and ``forge export`` resolve their argument here; nothing heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.artifacts import MANIFEST, Artifact, parent_directory, read_manifest
from forge.errors import ForgeError

REGISTRY_PREFIX = "models:/"


@dataclass(frozen=True)
class Reference:
    """A resolved reference: the artifact, what the user typed, the run directory that holds it (if any) and the
    registry entry (``forge.registry.ResolvedModel``) for ``models:/`` references. ``note`` says when an export was
    chosen instead of the run's own artifact."""

    text: str
    artifact: Artifact
    run_dir: Path | None = None
    registry: Any = None
    note: str | None = None

    @property
    def is_registry(self) -> bool:
        return self.registry is not None


def is_registry_reference(ref: str) -> bool:
    return str(ref).startswith(REGISTRY_PREFIX)


def resolve_reference(ref: str | Path, accepts: tuple[str, ...] | None = None) -> Reference:
    """Resolve ``ref`` (see the module docstring); ``accepts`` are the kinds the caller takes: a run whose own
    artifact is of another kind falls back to an export of an accepted kind (``note`` says which)."""
    text = str(ref)
    if is_registry_reference(text):
        return _registry(text)
    path = Path(text).expanduser()
    manifest = read_manifest(path)
    if manifest.get("type") != "run":
        return Reference(text=text, artifact=Artifact.load(path), run_dir=producing_run(path, manifest))
    artifact = Artifact.load(path)  # refuses unfinished runs in one line
    if accepts is not None and artifact.kind not in accepts:
        exports = _exports(path, accepts)
        if exports:
            chosen = exports[0]
            others = "" if len(exports) == 1 else f" (also: {', '.join(e.path.name for e in exports[1:])})"
            note = (f"{text}: the run's artifact is a {artifact.kind}; using its export {chosen.path} "
                    f"({chosen.kind}){others}")
            return Reference(text=text, artifact=chosen, run_dir=path, note=note)
    return Reference(text=text, artifact=artifact, run_dir=path)


def open_artifact(ref: str | Path, accepts: tuple[str, ...] | None = None) -> Artifact:
    """The artifact ``ref`` names: a run directory, an artifact or export directory, or ``models:/NAME/VERSION`` /
    ``models:/NAME@ALIAS``. See :func:`resolve_reference`."""
    return resolve_reference(ref, accepts).artifact


def _exports(run_dir: Path, accepts: tuple[str, ...]) -> list[Artifact]:
    found = []
    exports = run_dir / "exports"
    if exports.is_dir():
        for child in sorted(exports.iterdir()):
            if child.name.startswith(".") or not (child / MANIFEST).is_file():
                continue
            try:
                artifact = Artifact.load(child)
            except ForgeError:
                continue
            if artifact.kind in accepts:
                found.append(artifact)
    return found


def producing_run(path: Path, manifest: dict[str, Any] | None = None, depth: int = 0) -> Path | None:
    """The run directory that made the artifact at ``path``: the run it lives in (``run_dir`` in its manifest), or,
    for an export, the run of the artifact it was exported from. ``None`` when there is none (or it is gone)."""
    if depth > 8:
        return None
    try:
        manifest = manifest if manifest is not None else read_manifest(path)
    except ForgeError:
        return None
    if manifest.get("type") == "run":
        return path
    run_dir = manifest.get("run_dir")
    if run_dir:
        candidate = (path / str(run_dir)).resolve()
        try:
            if read_manifest(candidate).get("type") == "run":
                return candidate
        except ForgeError:
            pass
    parent = parent_directory(path, manifest)
    if parent is not None:
        return producing_run(parent, depth=depth + 1)
    return None


def _registry(ref: str) -> Reference:
    from forge import registry

    resolved = registry.resolve(ref)
    artifact = Artifact.load(Path(resolved.path))
    return Reference(text=ref, artifact=artifact, registry=resolved)
