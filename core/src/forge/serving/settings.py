"""Server settings, shared by every server plugin (``forge serve`` flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 1_000_000
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    timeout_s: float = 60.0
