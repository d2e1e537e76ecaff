"""Server settings, shared by every server plugin (``forge serve`` flags), validated before the artifact loads."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from forge.config import FieldRules


class ServeSettings(FieldRules):
    """What every server gets; ``forge serve`` turns a bad flag into one line naming it (exit 2)."""

    model_config = ConfigDict(frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="interface to bind")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    api_key: str | None = Field(None, min_length=1, description="required key (Bearer or X-API-Key)")
    max_body_bytes: int = Field(1_000_000, ge=1, description="larger request bodies get 413")
    max_batch_size: int = Field(16, ge=1, le=65536, description="micro-batch at most this many requests")
    max_wait_ms: float = Field(5.0, ge=0, le=60_000, description="wait at most this long to fill a micro-batch")
    timeout_s: float = Field(60.0, gt=0, le=86_400, description="give up on a request after this long (504)")
