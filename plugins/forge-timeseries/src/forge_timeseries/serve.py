"""Server for ``forecaster`` artifacts: ``POST /forecast`` and ``POST /forecast/batch``.

    forge serve runs/lstm-forecast-1 --port 8000
    curl localhost:8000/forecast -H 'content-type: application/json' \
         -d '{"history": [{"timestamp": "1960-01-01", "value": 417}, ...], "horizon": 6}'

Without ``history`` the forecast continues the series the model was trained on (its stored tail). Concurrent
requests are micro-batched into one model call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fastapi import HTTPException
from forge.artifacts import Artifact
from forge.serving.app import create_base_app
from forge.serving.batching import MicroBatcher
from forge.serving.settings import ServeSettings
from pydantic import BaseModel, ConfigDict, Field


class Point(BaseModel):
    model_config = ConfigDict(extra="allow")  # covariate columns by name

    timestamp: str
    value: float = Field(allow_inf_nan=False)


class ForecastRequest(BaseModel):
    history: list[Point] | None = Field(None, description="recent history, oldest first (default: stored tail)")
    horizon: int | None = Field(None, ge=1)


class BatchRequest(BaseModel):
    requests: list[ForecastRequest] = Field(min_length=1, max_length=256)


def window_from_request(request: ForecastRequest, spec: Any, tail: dict[str, Any]) -> tuple[np.ndarray, pd.Timestamp]:
    """The model's input window (raw values) and the last timestamp, or HTTP 422 saying what is wrong."""
    if request.horizon is not None and request.horizon > spec.horizon:
        raise HTTPException(422, f"horizon: at most {spec.horizon} (the model's horizon)")
    if request.history is None:
        return np.asarray(tail["values"], dtype=np.float64), pd.Timestamp(tail["timestamps"][-1])
    if len(request.history) < spec.window:
        raise HTTPException(422, f"history: needs at least {spec.window} points, got {len(request.history)}")
    points = request.history[-spec.window:]
    try:
        stamps = pd.DatetimeIndex([pd.Timestamp(p.timestamp) for p in points])
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, f"history: unparseable timestamp ({exc})") from None
    expected = pd.date_range(stamps[0], periods=len(stamps), freq=spec.freq)
    if not (expected == stamps).all():
        bad = next(i for i in range(len(stamps)) if stamps[i] != expected[i])
        raise HTTPException(422, f"history: timestamps must be consecutive at frequency {spec.freq}; "
                                 f"point {len(request.history) - spec.window + bad} is {stamps[bad]}, "
                                 f"expected {expected[bad]}")
    rows = []
    for i, point in enumerate(points):
        extra = point.model_extra or {}
        row = [point.value]
        for column in spec.columns[1:]:
            if column not in extra or not isinstance(extra[column], (int, float)) or isinstance(extra[column], bool):
                raise HTTPException(422, f"history.{i}.{column}: covariate must be a number")
            row.append(float(extra[column]))
        rows.append(row)
    window = np.asarray(rows, dtype=np.float64)
    if spec.transform.get("log") and (window <= 0).any():
        raise HTTPException(422, "history: values must be positive (the model works on log values)")
    return window, stamps[-1]


def create_forecast_app(artifact: Artifact, settings: ServeSettings) -> Any:
    """The torch server for ``forecaster`` artifacts."""
    from forge_timeseries.model import load_forecaster, predict

    spec, model = load_forecaster(artifact.path)
    app = create_base_app(f"forge forecaster ({spec.columns[0]})", settings)
    add_forecast_routes(app, spec, json.loads((artifact.path / "history.json").read_text()),
                        lambda windows: predict(spec, model, windows), settings)
    return app


def add_forecast_routes(app: Any, spec: Any, tail: dict[str, Any],
                        predict_windows: Callable[[np.ndarray], np.ndarray], settings: ServeSettings) -> None:
    """``POST /forecast`` and ``/forecast/batch`` around ``predict_windows`` (raw windows → raw forecasts)."""
    from forge_timeseries.series import future_timestamps

    batcher: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
        lambda windows: list(predict_windows(np.stack(windows))), settings.max_batch_size, settings.max_wait_ms)
    app.state.batcher = batcher

    def respond(request: ForecastRequest, values: np.ndarray, last: pd.Timestamp) -> dict[str, Any]:
        steps = request.horizon or spec.horizon
        stamps = future_timestamps(last, spec.freq, steps)
        return {"target": spec.columns[0], "horizon": steps, "freq": spec.freq,
                "forecast": [{"timestamp": t.isoformat(), "value": float(v)} for t, v in zip(stamps, values[:steps],
                                                                                           strict=True)]}

    @app.post("/forecast")
    async def forecast(request: ForecastRequest) -> dict[str, Any]:
        window, last = window_from_request(request, spec, tail)
        return respond(request, await batcher.submit(window), last)

    @app.post("/forecast/batch")
    async def forecast_batch(batch: BatchRequest) -> dict[str, Any]:
        prepared = [window_from_request(r, spec, tail) for r in batch.requests]
        outputs = await batcher.submit_many([w for w, _ in prepared])
        return {"results": [respond(r, o, last) for r, o, (_, last) in zip(batch.requests, outputs, prepared,
                                                                           strict=True)]}
