"""Server settings, shared by every server plugin (``forge serve`` flags), validated before the artifact loads."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from forge.config import FieldRules

DEFAULT_BATCH_SIZE = 16  # micro-batches of classifier/embedder/forecaster requests
# torch LM server: requests decoded together in one wave; on 2 CPU cores 64 gave 5.7x one-at-a-time req/s at 64
# clients against 4.3x for 16 (docs/benchmarks.md, "LM server under load"); a wave's KV cache grows with it
DEFAULT_LM_BATCH_SIZE = 64


class ServeSettings(FieldRules):
    """What every server gets; ``forge serve`` turns a bad flag into one line naming it (exit 2)."""

    model_config = ConfigDict(frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="interface to bind")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    api_key: str | None = Field(None, min_length=1, description="required key (Bearer or X-API-Key)")
    max_body_bytes: int = Field(1_000_000, ge=1, description="larger request bodies get 413")
    max_batch_size: int | None = Field(None, ge=1, le=65536,
                                       description="micro-batch at most this many requests (default: see batch_size)")
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

    def batch_size(self, default: int = DEFAULT_BATCH_SIZE) -> int:
        """``--max-batch-size`` when given, else the server's own default (16 for request micro-batches; the torch
        LM server decodes up to :data:`DEFAULT_LM_BATCH_SIZE` requests a wave)."""
        return self.max_batch_size if self.max_batch_size is not None else default
