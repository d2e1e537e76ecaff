"""``POST /embed`` for sentence embedders: the routes (shared with forge-onnx's ONNX Runtime server), the torch
server and the in-process predictor for ``sentence-embedder`` artifacts.

    forge serve runs/embed-1 --port 8000
    curl localhost:8000/embed -H 'content-type: application/json' -d '{"texts": ["a question", "an answer"]}'
    → {"embeddings": [[0.01, ...], [...]], "dimension": 384, "normalized": true}
    curl localhost:8000/embed -d '{"text": "one text"}'   → {"embedding": [...], "dimension": 384, ...}

Concurrent requests are micro-batched into one model call (``--max-batch-size``, ``--max-wait-ms``); the texts of
one request count one each.

    with forge.load_predictor(artifact, {"batch_size": 64}) as p:
        p.predict([{"text": "a question"}])   # → [{"embedding": [...]}]
        p.embed(["a", "b"])                    # → (2, dimension) float32 array
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import HTTPException
from forge.artifacts import Artifact
from forge.errors import DataError, ForgeError
from forge.predictors import Predictor
from forge.serving.app import create_base_app, encodable
from forge.serving.batching import MicroBatcher
from forge.serving.settings import ServeSettings
from pydantic import AfterValidator, BaseModel, Field, StrictStr, model_validator

MAX_CHARS = 20_000
MAX_TEXTS = 256
Text = Annotated[StrictStr, AfterValidator(encodable), Field(description="a text to embed")]


class EmbedRequest(BaseModel):
    text: Text | None = None
    texts: list[Text] | None = Field(None, min_length=1, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def _one_of(self) -> EmbedRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either 'text' (one string) or 'texts' (a list of strings)")
        return self


def _check(text: str, field: str, max_chars: int) -> None:
    if not text.strip():
        raise HTTPException(422, f"{field}: must not be empty")
    if len(text) > max_chars:
        raise HTTPException(422, f"{field}: {len(text)} characters is longer than the limit of {max_chars}")


def add_embed_routes(app: Any, embed: Callable[[list[str]], np.ndarray], settings: ServeSettings, dimension: int,
                     normalized: bool, max_chars: int = MAX_CHARS) -> None:
    """Add ``POST /embed``: ``{"text"}`` → ``{"embedding"}``, ``{"texts"}`` → ``{"embeddings"}`` (same order)."""
    batcher: MicroBatcher[str, np.ndarray] = MicroBatcher(lambda texts: list(embed(texts)), settings.batch_size(),
                                                          settings.max_wait_ms, max_queue=settings.max_queue)
    batcher.export(app.state.metrics)
    app.state.batcher = batcher
    facts = {"dimension": dimension, "normalized": normalized}

    @app.post("/embed")
    async def embed_route(request: EmbedRequest) -> dict[str, Any]:
        if request.text is not None:
            _check(request.text, "text", max_chars)
            vector = await batcher.submit(request.text)
            return {"embedding": [float(x) for x in vector], **facts}
        texts = list(request.texts or [])
        for i, text in enumerate(texts):
            _check(text, f"texts.{i}", max_chars)
        vectors = await batcher.submit_many(texts)
        return {"embeddings": [[float(x) for x in v] for v in vectors], **facts}


class EmbedderPredictor(Predictor):
    """Rows ``{"text": str}`` → ``{"embedding": [float, ...]}``, ``batch_size`` texts per model call."""

    kind = "embedder"

    def __init__(self, embed_batch: Callable[[list[str]], np.ndarray], dimension: int, batch_size: int = 32,
                 close: Callable[[], None] | None = None) -> None:
        self.embed_batch = embed_batch
        self.dimension = dimension
        self.batch_size = batch_size
        self._close = close

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dimension) float32 embeddings."""
        parts = [np.asarray(self.embed_batch(texts[i:i + self.batch_size]), dtype=np.float32)
                 for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), dtype=np.float32)

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts = []
        for index, row in enumerate(rows):
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"rows.{index}.text: a non-empty string is required")
            texts.append(text)
        return [{"embedding": [float(x) for x in vector]} for vector in self.embed(texts)]

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


def torch_embedder(artifact: Artifact) -> tuple[Callable[[list[str]], np.ndarray], int, bool]:
    """A texts → embeddings function for a ``sentence-embedder`` artifact (sentence-transformers, GPU if present),
    its dimension and whether its vectors are unit length."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ForgeError("a sentence-embedder needs sentence-transformers: pip install 'forge-hf[embed]'") from None
    model = SentenceTransformer(str(artifact.path), model_kwargs={"use_safetensors": True})
    model.eval()

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=max(len(texts), 1), convert_to_numpy=True,
                                       show_progress_bar=False), dtype=np.float32)

    dimension = artifact.manifest.get("dimension") or model.get_embedding_dimension() or 0
    return embed, int(dimension), bool(artifact.manifest.get("normalize", False))


def int_option(options: dict[str, Any], name: str, default: int) -> int:
    from forge_hf.predict import int_option as parse

    return parse(options, name, default)


def embedder_predictor(artifact: Artifact, options: dict[str, Any]) -> EmbedderPredictor:
    embed, dimension, _ = torch_embedder(artifact)
    return EmbedderPredictor(embed, dimension, int_option(options, "batch_size", 32))


def create_embedder_app(artifact: Artifact, settings: ServeSettings) -> Any:
    embed, dimension, normalized = torch_embedder(artifact)
    app = create_base_app(f"forge sentence-embedder ({dimension} dimensions)", settings)
    add_embed_routes(app, embed, settings, dimension, normalized)
    return app
