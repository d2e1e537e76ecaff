"""``/predict`` for text classifiers: the routes (shared with forge-onnx's ONNX Runtime server) and the torch server
for ``sequence-classifier`` artifacts.

    forge serve runs/classify-1 --port 8000
    curl localhost:8000/predict -H 'content-type: application/json' -d '{"text": "a lovely film"}'
    → {"label": "positive", "confidence": 0.97, "scores": {"negative": 0.03, "positive": 0.97}}

Concurrent requests are micro-batched into one model call (``--max-batch-size``, ``--max-wait-ms``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import HTTPException
from forge.artifacts import Artifact
from forge.serving.app import create_base_app, encodable
from forge.serving.batching import MicroBatcher
from forge.serving.settings import ServeSettings
from pydantic import AfterValidator, BaseModel, Field, StrictStr

from forge_hf.predict import softmax  # noqa: F401  (re-exported: forge-onnx imports it from here)

MAX_CHARS = 20_000
Text = Annotated[StrictStr, AfterValidator(encodable), Field(description="the text to classify")]


class PredictRequest(BaseModel):
    text: Text


class BatchPredictRequest(BaseModel):
    texts: list[Text] = Field(min_length=1, max_length=256)


def _check(text: str, field: str, max_chars: int) -> None:
    if not text.strip():
        raise HTTPException(422, f"{field}: must not be empty")
    if len(text) > max_chars:
        raise HTTPException(422, f"{field}: {len(text)} characters is longer than the limit of {max_chars}")


def add_classifier_routes(app: Any, labels: list[str], predict_probs: Callable[[list[str]], np.ndarray],
                          settings: ServeSettings, max_chars: int = MAX_CHARS) -> None:
    """Add ``POST /predict`` and ``POST /predict/batch`` answering with label, confidence and scores."""
    batcher: MicroBatcher[str, np.ndarray] = MicroBatcher(lambda texts: list(predict_probs(texts)),
                                                          settings.batch_size(), settings.max_wait_ms,
                                                          max_queue=settings.max_queue)
    batcher.export(app.state.metrics)
    app.state.batcher = batcher

    def answer(probs: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(probs))
        return {"label": labels[best], "confidence": float(probs[best]),
                "scores": {name: float(p) for name, p in zip(labels, probs, strict=True)}}

    @app.post("/predict")
    async def predict(request: PredictRequest) -> dict[str, Any]:
        _check(request.text, "text", max_chars)
        return answer(await batcher.submit(request.text))

    @app.post("/predict/batch")
    async def predict_batch(request: BatchPredictRequest) -> dict[str, Any]:
        for i, text in enumerate(request.texts):
            _check(text, f"texts.{i}", max_chars)
        return {"results": [answer(p) for p in await batcher.submit_many(list(request.texts))]}


def create_classifier_app(artifact: Artifact, settings: ServeSettings) -> Any:
    from forge_hf.predict import torch_classifier

    labels, predict_probs = torch_classifier(artifact)
    app = create_base_app(f"forge sequence-classifier ({', '.join(labels)})", settings, page="classify")
    add_classifier_routes(app, labels, predict_probs, settings)
    return app
