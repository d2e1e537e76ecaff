"""Seals: a manifest's claim "this path is where my own run put it", checkable later by the same user.

A manifest (``forge.json``) is data that anyone who can write the artifact directory can edit, so the paths it names
outside its own tree (an adapter's local ``base_model``, an export's ``parent``) are followed only when sealed: an
HMAC-SHA256 of the real path, keyed with this user's ``$XDG_CONFIG_HOME/forge/manifest-key`` (default
``~/.config``; made mode 0600 on first use, ignored when other users can read it). An artifact copied from another
user or box carries seals this key does not verify, so its outside paths are not followed.

    seal(path, "parent")              # {"path": real path, "hmac": ...}, or None (no key could be made)
    sealed_path(manifest_value, "parent")   # the real path, when the seal is this user's and still holds
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any


def key_path() -> Path:
    """This user's sealing key: ``$XDG_CONFIG_HOME/forge/manifest-key`` (default ``~/.config``)."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "forge" / "manifest-key"


def key(create: bool) -> bytes | None:
    """The key, made on first use when ``create``; ``None`` when there is none or it is not private to this user
    (another user's readable key could forge seals)."""
    path = key_path()
    if create and not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        except FileExistsError:  # another process made it first
            pass
        except OSError:  # an unwritable home: no seal
            return None
    try:
        stat = path.stat()
        if stat.st_uid != os.getuid() or stat.st_mode & 0o077:
            return None
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text.encode() if len(text) >= 32 else None


def mac(secret: bytes, purpose: str, real: str) -> str:
    """The seal's HMAC of ``real`` for ``purpose`` (``base_model``, ``parent``: a seal made for one field does not
    verify for another)."""
    return hmac.new(secret, f"forge {purpose} v1\0".encode() + real.encode(), hashlib.sha256).hexdigest()


def seal(path: Path, purpose: str) -> dict[str, str] | None:
    """``{"path": real path, "hmac": ...}`` for ``path``; ``None`` when no key can be made (an unwritable home)."""
    secret = key(create=True)
    if secret is None:
        return None
    real = str(path.resolve())
    return {"path": real, "hmac": mac(secret, purpose, real)}


def sealed_path(value: Any, purpose: str) -> Path | None:
    """The real path a seal vouches for, when the seal is this user's and the path still resolves to itself (a
    directory swapped for a symlink since sealing no longer matches); else ``None``."""
    if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not isinstance(value.get("hmac"), str):
        return None
    secret = key(create=False)
    if secret is None or not hmac.compare_digest(mac(secret, purpose, value["path"]), value["hmac"]):
        return None
    path = Path(value["path"])
    try:
        return path if path.is_absolute() and path.resolve() == path else None
    except (OSError, ValueError, RuntimeError):  # a NUL byte or a symlink loop: vouches for nothing
        return None
