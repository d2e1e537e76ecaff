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
    max_queue: int = Field(64, ge=1, le=1_000_000,
                           description="requests waiting for the model beyond this many get 429 with Retry-After")
    read_timeout_s: float = Field(5.0, gt=0, le=3600,
                                  description="a request's headers, and then its body, must arrive within this long")
    keep_alive_s: float = Field(5.0, gt=0, le=3600, description="idle keep-alive connections are closed after this")
    grace_s: float = Field(5.0, ge=0, le=3600, description="on SIGTERM, wait at most this long for requests in flight")
    max_model_len: int | None = Field(None, ge=16, le=10_000_000,
                                      description="context length, prompt and output (outside engines: vllm)")
