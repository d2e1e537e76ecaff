"""Server for ``forecaster`` and ``stat-forecaster`` artifacts: ``POST /forecast`` and ``POST /forecast/batch``
(forge-onnx serves ``onnx-forecaster`` with the same routes).

    forge serve runs/lstm-forecast-1 --port 8000
    curl localhost:8000/forecast -H 'content-type: application/json' \\
         -d '{"id": "store-2", "history": [{"timestamp": "1960-01-01", "value": 417}, ...], "horizon": 6}'

Without ``history`` the forecast continues the series the model was trained on (``id`` names which, for data with
an id column). Each point carries the prediction interval bounds ``lo_80``/``hi_80``... for the levels asked
(``level``, default the artifact's, 80 and 95). Concurrent requests are micro-batched into one model call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi import HTTPException
from forge import Artifact, DataError, ServeSettings
from forge.predictors import Predictor
from forge.serving.app import create_base_app
from forge.serving.batching import MicroBatcher
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forge_timeseries.forecasters import Forecast, Forecaster, Query, QueryError, load
from forge_timeseries.metrics import level_name


class Point(BaseModel):
    model_config = ConfigDict(extra="allow")  # covariate columns by name

    timestamp: str
    value: float = Field(allow_inf_nan=False)


class ForecastRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str | None = Field(None, description="the series (models trained on data with an id column)")
    history: list[Point] | None = Field(None, description="recent history, oldest first (default: stored tail)")
    horizon: int | None = Field(None, ge=1)
    level: list[float] | None = Field(None, max_length=10, description="interval levels in percent (default: the "
                                                                        "artifact's, e.g. [80, 95]; [] for none)")
    model: str | None = Field(None, description="stat-forecaster: which fitted model (default: the primary one)")


class BatchRequest(BaseModel):
    requests: list[ForecastRequest] = Field(min_length=1, max_length=256)


def query_from_request(request: ForecastRequest, forecaster: Forecaster) -> tuple[Query, pd.Timestamp]:
    """The query for the forecaster and the last timestamp of its history, or HTTP 422 saying what is wrong."""
    steps = request.horizon or forecaster.horizon
    if steps > forecaster.max_steps:
        why = " (the model's horizon)" if forecaster.max_steps == forecaster.horizon else ""
        raise HTTPException(422, f"horizon: at most {forecaster.max_steps}{why}")
    levels = tuple(sorted(set(request.level))) if request.level is not None else forecaster.levels
    if any(not 0 < lv < 100 for lv in levels):
        raise HTTPException(422, "level: each level is a percentage strictly between 0 and 100")
    if request.model is not None and request.model not in forecaster.models:
        raise HTTPException(422, f"model: {request.model!r} is not one of this artifact's models "
                                 f"({', '.join(forecaster.models)})")
    try:
        forecaster.check_series(request.id, request.history is not None)
    except QueryError as exc:
        raise HTTPException(422, str(exc)) from None
    if request.history is None:
        tail = forecaster.tails[request.id]
        return Query(request.id, None, steps, levels, request.model), tail.timestamps[-1]
    minimum = forecaster.min_history
    if len(request.history) < minimum:
        raise HTTPException(422, f"history: needs at least {minimum} points, got {len(request.history)}")
    # the LSTM reads its window; statistical models filter the whole history given
    first = len(request.history) - forecaster.min_history if forecaster.kind != "stat-forecaster" else 0
    points = request.history[first:]
    try:
        stamps = pd.DatetimeIndex([pd.Timestamp(p.timestamp) for p in points])
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, f"history: unparseable timestamp ({exc})") from None
    expected = pd.date_range(stamps[0], periods=len(stamps), freq=forecaster.freq)
    if not (expected == stamps).all():
        bad = next(i for i in range(len(stamps)) if stamps[i] != expected[i])
        raise HTTPException(422, f"history: timestamps must be consecutive at frequency {forecaster.freq}; "
                                 f"point {first + bad} is {stamps[bad]}, expected {expected[bad]}")
    rows = []
    for i, point in enumerate(points):
        extra = point.model_extra or {}
        row = [point.value]
        for column in forecaster.columns[1:]:
            if column not in extra or not isinstance(extra[column], (int, float)) or isinstance(extra[column], bool):
                raise HTTPException(422, f"history.{first + i}.{column}: covariate must be a number")
            row.append(float(extra[column]))
        rows.append(row)
    values = np.asarray(rows, dtype=np.float64)
    if forecaster.log and (values <= 0).any():
        raise HTTPException(422, "history: values must be positive (the model works on log values)")
    return Query(request.id, values, steps, levels, request.model), stamps[-1]


def create_forecast_app(artifact: Artifact, settings: ServeSettings) -> Any:
    """The server for ``forecaster`` (torch) and ``stat-forecaster`` (statsforecast) artifacts."""
    forecaster = load(artifact)
    app = create_base_app(f"forge {artifact.kind} ({forecaster.columns[0]})", settings, page="forecast")
    add_forecast_routes(app, forecaster, settings)
    return app


def answer(forecaster: Forecaster, query: Query, out: Forecast | QueryError, last: pd.Timestamp) -> dict[str, Any]:
    """The ``/forecast`` response body for one query (HTTP 422 when the forecaster could not answer it)."""
    from forge_timeseries.series import future_timestamps

    if isinstance(out, QueryError):
        raise HTTPException(422, str(out))
    stamps = future_timestamps(last, forecaster.freq, query.steps)
    points = []
    for step, stamp in enumerate(stamps):
        point: dict[str, Any] = {"timestamp": stamp.isoformat(), "value": float(out.mean[step])}
        for level in query.levels:
            point[f"lo_{level_name(level)}"] = float(out.lower[level][step])
            point[f"hi_{level_name(level)}"] = float(out.upper[level][step])
        points.append(point)
    return {"target": forecaster.columns[0], "id": query.series, "model": out.model, "horizon": query.steps,
            "freq": forecaster.freq, "levels": list(query.levels), "forecast": points}


class ForecastPredictor(Predictor):
    """``forge.load_predictor`` for forecasters: rows are ``/forecast`` request bodies (``{"id"?, "history"?,
    "horizon"?, "level"?, "model"?}``), outputs the response bodies; all rows in one ``forecast_many`` call."""

    kind = "forecaster"

    def __init__(self, forecaster: Forecaster) -> None:
        self.forecaster = forecaster

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prepared = []
        for index, row in enumerate(rows):
            try:
                request = ForecastRequest.model_validate(row)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error["loc"])
                raise DataError(f"rows.{index}{'.' + where if where else ''}: {error['msg']}") from None
            try:
                prepared.append(query_from_request(request, self.forecaster))
            except HTTPException as exc:
                raise DataError(f"rows.{index}.{exc.detail}") from None
        outputs = self.forecaster.forecast_many([q for q, _ in prepared])
        results = []
        for index, ((query, last), out) in enumerate(zip(prepared, outputs, strict=True)):
            if isinstance(out, QueryError):
                raise DataError(f"rows.{index}.{out}")
            results.append(answer(self.forecaster, query, out, last))
        return results


def create_predictor(artifact: Artifact, options: dict[str, Any]) -> ForecastPredictor:
    return ForecastPredictor(load(artifact))


def add_forecast_routes(app: Any, forecaster: Forecaster, settings: ServeSettings) -> None:
    """``POST /forecast`` and ``/forecast/batch`` around any :class:`Forecaster`."""
    batcher: MicroBatcher[Query, Forecast | QueryError] = MicroBatcher(
        forecaster.forecast_many, settings.batch_size(), settings.max_wait_ms, max_queue=settings.max_queue)
    batcher.export(app.state.metrics)
    app.state.batcher = batcher

    def respond(query: Query, out: Forecast | QueryError, last: pd.Timestamp) -> dict[str, Any]:
        return answer(forecaster, query, out, last)

    @app.post("/forecast")
    async def forecast(request: ForecastRequest) -> dict[str, Any]:
        query, last = query_from_request(request, forecaster)
        return respond(query, await batcher.submit(query), last)

    @app.post("/forecast/batch")
    async def forecast_batch(batch: BatchRequest) -> dict[str, Any]:
        def named(index: int, call: Any, *args: Any) -> Any:
            try:
                return call(*args)
            except HTTPException as exc:
                raise HTTPException(exc.status_code, f"requests.{index}.{exc.detail}") from None

        prepared = [named(i, query_from_request, r, forecaster) for i, r in enumerate(batch.requests)]
        outputs = await batcher.submit_many([q for q, _ in prepared])
        return {"results": [named(i, respond, q, o, last)
                            for i, ((q, last), o) in enumerate(zip(prepared, outputs, strict=True))]}
