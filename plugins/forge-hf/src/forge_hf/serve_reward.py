"""``POST /score`` for ``reward-model`` artifacts (recipe ``reward``), and their in-process predictor.

    forge serve runs/rm --port 8000
    curl localhost:8000/score -H 'content-type: application/json' \\
        -d '{"prompt": "capital of France?", "completion": "Paris."}'
    → {"score": 1.73}
    curl localhost:8000/score/batch -d '{"items": [{"prompt": "...", "completion": "..."}, ...]}'
    → {"scores": [1.73, -0.41]}

``prompt`` and ``completion`` are strings or chat message lists, encoded as in training
(:mod:`forge_hf.reward_model`). Concurrent requests are micro-batched into one model call (``--max-batch-size``,
``--max-wait-ms``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException
from forge.artifacts import Artifact
from forge.errors import DataError
from forge.predictors import Predictor
from forge.serving.app import create_base_app, encodable
from forge.serving.batching import MicroBatcher
from forge.serving.settings import ServeSettings
from pydantic import BaseModel, Field, StrictStr

from forge_hf.reward_model import Scorer, load_scorer

MAX_CHARS = 50_000


class Message(BaseModel):
    role: StrictStr
    content: StrictStr


Side = Annotated[StrictStr | list[Message], Field(description="text, or a list of chat messages")]


class ScoreRequest(BaseModel):
    prompt: Side
    completion: Side


class BatchScoreRequest(BaseModel):
    items: list[ScoreRequest] = Field(min_length=1, max_length=256)


def _plain(value: str | list[Message]) -> Any:
    return value if isinstance(value, str) else [m.model_dump() for m in value]


def _check(request: ScoreRequest, where: str) -> dict[str, Any]:
    for field in ("prompt", "completion"):
        value = getattr(request, field)
        text = value if isinstance(value, str) else "".join(m.content for m in value)
        try:  # a lone surrogate ("\ud800" in the JSON) is a TypeError in the tokenizer: a 500
            encodable(text if isinstance(value, str) else "".join(m.role + m.content for m in value))
        except ValueError:
            raise HTTPException(422, f"{where}{field}: contains a character that cannot be encoded as UTF-8 "
                                     "(a lone surrogate)") from None
        if field == "completion" and not text.strip():
            raise HTTPException(422, f"{where}completion: must not be empty")
        if len(text) > MAX_CHARS:
            raise HTTPException(422, f"{where}{field}: {len(text)} characters is longer than the limit of {MAX_CHARS}")
    return {"prompt": _plain(request.prompt), "completion": _plain(request.completion)}


def create_reward_app(artifact: Artifact, settings: ServeSettings) -> Any:
    scorer = load_scorer(artifact.path, artifact.manifest, batch_size=settings.batch_size())
    app = create_base_app(f"forge reward-model ({artifact.manifest.get('base_model', artifact.path.name)})", settings)
    batcher: MicroBatcher[dict[str, Any], float] = MicroBatcher(scorer.score, settings.batch_size(),
                                                                settings.max_wait_ms, max_queue=settings.max_queue)
    batcher.export(app.state.metrics)
    app.state.batcher = batcher

    @app.post("/score")
    async def score(request: ScoreRequest) -> dict[str, Any]:
        return {"score": await batcher.submit(_check(request, ""))}

    @app.post("/score/batch")
    async def score_batch(request: BatchScoreRequest) -> dict[str, Any]:
        pairs = [_check(item, f"items.{i}.") for i, item in enumerate(request.items)]
        return {"scores": await batcher.submit_many(pairs)}

    return app


class RewardPredictor(Predictor):
    """Rows ``{"prompt", "completion"}`` → ``{"score"}``."""

    kind = "reward-model"

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, row in enumerate(rows):
            if not isinstance(row, dict) or "completion" not in row or "prompt" not in row:
                raise DataError(f"rows.{index}: needs 'prompt' and 'completion'")
        return [{"score": s} for s in self.scorer.score(rows)]


def reward_predictor(artifact: Artifact, options: dict[str, Any]) -> RewardPredictor:
    from forge_hf.predict import int_option

    return RewardPredictor(load_scorer(artifact.path, artifact.manifest,
                                       batch_size=int_option(options, "batch_size", 16)))
