"""Artifacts are directories with a manifest, ``forge.json``; so are run directories.

An artifact manifest says what the artifact is (``kind``: ``causal-lm``, ``sequence-classifier``, ``forecaster``...),
how it was made (recipe or exporter, provider, config, plugin versions, dataset hash, metrics, parent artifact)
and which files it holds. Kinds are the contract between recipes, exporters and servers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.errors import ForgeError

MANIFEST = "forge.json"
SCHEMA = 1


@dataclass
class ArtifactResult:
    """What a recipe or exporter returns: the kind of artifact it wrote, its metrics and any extra facts."""

    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """An artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @classmethod
    def load(cls, path: Path) -> Artifact:
        """Open an artifact directory, or the artifact of a completed run directory."""
        path = Path(path)
        manifest = read_manifest(path)
        if manifest.get("type") == "run":
            status = manifest.get("status")
            if status != "completed":
                raise ForgeError(f"{path}: run is {status}, not completed; it has no artifact yet")
            artifact = manifest.get("artifact") or {}
            return cls.load(inside(path, str(artifact.get("path", "artifact")), path / MANIFEST))
        if "kind" not in manifest:
            raise ForgeError(f"{path / MANIFEST}: not an artifact manifest (no 'kind')")
        return cls(path=path, manifest=manifest)


def inside(root: Path, relative: str, origin: Path) -> Path:
    """``root / relative`` when it stays inside ``root`` (symlinks resolved); a manifest that points elsewhere
    (``../../etc``, an absolute path) is refused, so opening an artifact never reads outside its tree."""
    target = Path(root) / relative
    if not target.resolve().is_relative_to(Path(root).resolve()):
        raise ForgeError(f"{origin}: path {relative!r} points outside {root}; refusing to follow it")
    return target


def fresh_directory(parent: Path, name: str) -> Path:
    """``parent/NAME-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... when taken): a new run or eval directory's path."""
    base = Path(parent) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def read_manifest(path: Path) -> dict[str, Any]:
    file = Path(path) / MANIFEST
    if not Path(path).exists():
        raise ForgeError(f"{path}: no such directory")
    if not file.is_file():
        raise ForgeError(f"{path}: not a forge run or artifact (no {MANIFEST})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ForgeError(f"{file}: unreadable manifest: {exc}") from None
    if not isinstance(data, dict):
        raise ForgeError(f"{file}: manifest is not a JSON object")
    return data


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees half a file (temp file + rename, fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STAGING = ".staging-"  # staged directories are named .TARGET.staging-XXXXXXXX beside their target


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh directory beside ``target``; when the block succeeds it becomes ``target`` (one rename),
    when it fails it is removed, so ``target`` never holds half a result. ``target`` may exist only empty.

    The staging directory is locked (``flock``) while its process lives: a process killed outright (SIGKILL, a
    power cut) leaves it behind, and the next staging for the same target removes it, knowing by the free lock
    that its owner is gone (never by a pid, which the system may have given to another process)."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ForgeError(f"{target}: already exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING}", dir=target.parent))
    lock = _lock_directory(staging)
    try:
        yield staging
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _lock_directory(directory: Path, wait: bool = True) -> int | None:
    """An exclusive ``flock`` on ``directory`` (held until the returned descriptor is closed, or the process
    ends); None when another process holds it (``wait=False``) or the file system has no locks."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_abandoned_staging(target: Path) -> list[Path]:
    """Remove staging directories of ``target`` left by processes that no longer run; return what was removed."""
    removed = []
    for candidate in target.parent.glob(f".{target.name}{STAGING}*"):
        try:
            if not candidate.is_dir() or candidate.is_symlink() or time.time() - candidate.stat().st_mtime < 1:
                continue  # (a second's grace: a directory made this instant is locked by its maker next)
            lock = _lock_directory(candidate, wait=False)
        except OSError:  # gone meanwhile
            continue
        if lock is None:  # its process is still writing it
            continue
        try:
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
        finally:
            os.close(lock)
    return removed


def list_files(directory: Path) -> list[dict[str, Any]]:
    """Relative path and size of every file under ``directory`` except the manifest."""
    files = []
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = file.relative_to(directory).as_posix()
        if relative != MANIFEST:
            files.append({"path": relative, "bytes": file.stat().st_size})
    return files


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_artifact_manifest(directory: Path, result: ArtifactResult, made_by: dict[str, Any]) -> dict[str, Any]:
    """Write ``directory/forge.json`` for a finished artifact and return it."""
    manifest = {
        "schema": SCHEMA,
        "type": "artifact",
        "kind": result.kind,
        **made_by,
        "metrics": result.metrics,
        **result.extra,
        "files": list_files(directory),
    }
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest


def parent_directory(path: Path, manifest: dict[str, Any]) -> Path | None:
    """The directory of the artifact an export at ``path`` was made from (its manifest's ``parent``), when it may be
    followed: inside the export's own tree, the run an export sits in (``RUN/exports/NAME``), or sealed by this
    user's ``forge export`` (:mod:`forge.seals`). A hand-edited or foreign ``parent`` is not followed: ``None``."""
    parent = manifest.get("parent")
    named = parent.get("path") if isinstance(parent, dict) else None
    if not isinstance(named, str) or not named:
        return None
    from forge import seals

    try:
        real, here = Path(named).expanduser().resolve(), path.resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop, an unknown ~user: not followed
        return None
    if real.is_relative_to(here) or (here.parent.name == "exports" and here.parent.parent == real):
        return real
    sealed = seals.sealed_path(parent.get("seal"), "parent") if isinstance(parent, dict) else None
    return real if sealed is not None and sealed == real else None
