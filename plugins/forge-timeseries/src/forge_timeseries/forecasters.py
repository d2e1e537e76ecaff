"""One way to ask any forecasting artifact for forecasts with intervals: ``forecaster`` (torch LSTM),
``onnx-forecaster`` (the same network in ONNX Runtime) and ``stat-forecaster`` (statsforecast models).

The ``/forecast`` server and the ``backtest`` evaluator use only this::

    forecaster = load(forge.Artifact.load(Path("runs/lstm-forecast-1")))
    [out] = forecaster.forecast_many([Query(series="store-2", history=None, steps=6, levels=(80.0, 95.0))])
    out.mean, out.lower[95.0], out.upper[95.0]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from forge.artifacts import Artifact
from forge.errors import ForgeError

from forge_timeseries.spec import ForecasterSpec, IntervalCalibration, WindowTransform

KINDS = ("forecaster", "onnx-forecaster", "stat-forecaster")


class QueryError(ValueError):
    """A query the artifact cannot answer: ``field`` names the request field (``id``, ``history``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class Query:
    series: str | None  # series id (None: the single series, or a new series given by its history)
    history: np.ndarray | None  # (n, features) raw values, oldest first; None: continue the stored series
    steps: int
    levels: tuple[float, ...] = (80.0, 95.0)
    model: str | None = None  # stat-forecaster: which fitted model (None: the primary one)


@dataclass
class Forecast:
    mean: np.ndarray
    lower: dict[float, np.ndarray] = field(default_factory=dict)
    upper: dict[float, np.ndarray] = field(default_factory=dict)
    model: str = ""


@dataclass
class SeriesTail:
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (n, features)


def load_history(directory: Path) -> dict[str | None, SeriesTail]:
    """``history.json``: the last points of each series (``{"series": [{"id", "timestamps", "values"}]}``; artifacts
    made before panels held ``{"timestamps", "values"}`` for their one series)."""
    data = json.loads((directory / "history.json").read_text())
    entries = data.get("series", [{"id": None, **data}])
    return {e["id"]: SeriesTail(pd.DatetimeIndex([pd.Timestamp(t) for t in e["timestamps"]]),
                                np.asarray(e["values"], dtype=np.float64)) for e in entries}


def save_history(directory: Path, tails: dict[str | None, SeriesTail]) -> None:
    entries = [{"id": key, "timestamps": [str(t) for t in tail.timestamps], "values": tail.values.tolist()}
               for key, tail in tails.items()]
    (directory / "history.json").write_text(json.dumps({"series": entries}))


class Forecaster:
    """What every forecasting artifact offers (see the subclasses)."""

    kind: str
    columns: list[str]  # target first, then covariates the model reads
    time_column: str
    id_column: str | None
    freq: str
    season_length: int
    horizon: int  # the steps it was trained to forecast
    max_steps: int  # the most steps one query may ask for
    min_history: int  # the fewest points a given history may have
    levels: tuple[float, ...]  # default interval levels
    models: tuple[str, ...]  # names of the models a query may pick (the first is the default)
    tails: dict[str | None, SeriesTail]
    log: bool = False  # works on log values: history must be positive
    trained_until: dict[str, str]

    @property
    def series_ids(self) -> list[str | None]:
        return list(self.tails)

    def check_series(self, series: str | None, has_history: bool) -> None:
        """Raise QueryError when ``series`` is not one this artifact can forecast."""
        panel = self.id_column is not None
        if not panel and series is not None:
            raise QueryError("id", "this model was trained on one series (no id column); leave id out")
        if panel and series is None and not has_history:
            raise QueryError("id", f"required: the model was trained on {len(self.tails)} series "
                                   f"({_some(self.series_ids)})")
        if panel and series is not None and series not in self.tails and not self.can_forecast_new_series():
            raise QueryError("id", f"unknown series {series!r} (known: {_some(self.series_ids)})")
        if panel and series is not None and series not in self.tails and not has_history:
            raise QueryError("id", f"unknown series {series!r}: give its history, or one of "
                                   f"{_some(self.series_ids)}")

    def can_forecast_new_series(self) -> bool:
        return False

    def forecast_many(self, queries: Sequence[Query]) -> list[Forecast | QueryError]:
        raise NotImplementedError


def _some(ids: Sequence[Any], shown: int = 5) -> str:
    head = ", ".join(repr(i) for i in ids[:shown])
    return head + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


class WindowForecaster(Forecaster):
    """The LSTM (torch or ONNX Runtime): ``run_model`` maps scaled inputs (batch, window, features) float32 to
    scaled outputs (batch, horizon). A series it has not seen is scaled by its own history (a global model)."""

    def __init__(self, kind: str, spec: ForecasterSpec, tails: dict[str | None, SeriesTail],
                 run_model: Callable[[np.ndarray], np.ndarray]) -> None:
        self.kind, self.spec, self.tails, self.run_model = kind, spec, tails, run_model
        self.columns, self.time_column, self.id_column = spec.columns, spec.time_column, spec.id_column
        self.freq, self.season_length = spec.freq, spec.season_length
        self.horizon = self.max_steps = spec.horizon
        self.min_history = spec.window
        self.models = ("LSTM",)
        self.log = bool(spec.transform.get("log"))
        self.calibration = spec.calibration()
        self.levels = tuple(float(x) for x in spec.levels) if self.calibration else ()
        self.trained_until = dict(spec.trained_until)

    def can_forecast_new_series(self) -> bool:
        return True

    def forecast_many(self, queries: Sequence[Query]) -> list[Forecast | QueryError]:
        if not queries:
            return []
        window = self.spec.window
        windows = np.stack([(q.history if q.history is not None else self.tails[q.series].values)[-window:]
                            for q in queries])
        scales = np.stack([
            np.asarray(self.spec.scales_of(q.series), dtype=np.float64) if self.spec.knows(q.series)
            else WindowTransform.of_windows(windows[i:i + 1], self.log).scales[0]
            for i, q in enumerate(queries)])
        transform = WindowTransform(log=self.log, scales=scales)
        predicted = np.asarray(self.run_model(transform.inputs(windows)), dtype=np.float64)
        mean = transform.outputs(windows, predicted)
        results: list[Forecast | QueryError] = []
        bounds: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        if self.calibration is not None:
            for level in sorted({lv for q in queries for lv in q.levels}):
                width = self.calibration.widths(level, self.horizon)
                bounds[level] = (transform.outputs(windows, predicted - width), transform.outputs(windows,
                                                                                                  predicted + width))
        for i, q in enumerate(queries):
            if q.levels and self.calibration is None:
                results.append(QueryError("level", "this model has no interval calibration (trained before "
                                                   "intervals existed); ask without level"))
                continue
            results.append(Forecast(mean=mean[i, :q.steps], model="LSTM",
                                    lower={lv: bounds[lv][0][i, :q.steps] for lv in q.levels},
                                    upper={lv: bounds[lv][1][i, :q.steps] for lv in q.levels}))
        return results


class StatForecaster(Forecaster):
    """statsforecast models fitted per series. With ``history`` the fitted parameters of the series are applied to
    it (statsforecast ``forward``); without, the model continues the series it was fitted on."""

    MAX_STEPS = 1000

    def __init__(self, spec: Any, fitted: dict[str | None, dict[str, Any]], tails: dict[str | None, SeriesTail]):
        self.kind, self.spec, self.fitted, self.tails = "stat-forecaster", spec, fitted, tails
        self.columns, self.time_column, self.id_column = spec.columns, spec.time_column, spec.id_column
        self.freq, self.season_length = spec.freq, spec.season_length
        self.horizon = spec.horizon
        self.max_steps = max(self.MAX_STEPS, spec.horizon)
        self.min_history = max(2 * spec.season_length, 3)
        self.levels = tuple(float(x) for x in spec.levels)
        self.models = (spec.primary, *[m for m in spec.models if m != spec.primary])
        self.trained_until = dict(spec.trained_until)
        self.calibrations = {name: IntervalCalibration(**fields) for name, fields in spec.calibration.items()}
        if spec.interval_method == "conformal":
            self.max_steps = spec.horizon  # the calibration covers the trained horizon only

    def forecast_many(self, queries: Sequence[Query]) -> list[Forecast | QueryError]:
        from forge_timeseries.statistical import forecast_model

        results: list[Forecast | QueryError] = []
        for q in queries:
            name = q.model or self.spec.primary
            if name not in self.spec.models:
                results.append(QueryError("model", f"{name!r} is not one of this artifact's models "
                                                   f"({', '.join(self.spec.models)})"))
                continue
            model = self.fitted[q.series][name]
            history = None if q.history is None else q.history[:, 0]
            conformal = self.spec.interval_method == "conformal"
            try:
                mean, lower, upper = forecast_model(model, history, q.steps, () if conformal else q.levels)
            except Exception as exc:  # statsforecast on a history it cannot filter: the caller's input
                results.append(QueryError("history", f"{name} cannot forecast from this history "
                                                     f"({type(exc).__name__}: {exc})".splitlines()[0]))
                continue
            if conformal:
                calibration = self.calibrations[name]
                scale = self.spec.series_scale[q.series if q.series is not None else ""]
                widths = {lv: calibration.widths(lv, q.steps) * scale for lv in q.levels}
                lower = {lv: mean - w for lv, w in widths.items()}
                upper = {lv: mean + w for lv, w in widths.items()}
            results.append(Forecast(mean=mean, lower=lower, upper=upper, model=name))
        return results


def onnx_runner(model_path: Path, threads: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """Scaled inputs → scaled outputs through a plain ONNX Runtime session (forge-onnx's session settings)."""
    try:
        from forge_onnx.export import session
    except ImportError:
        raise ForgeError("an onnx-forecaster needs forge-onnx: pip install forge-onnx") from None
    ort_session = session(model_path, threads)
    return lambda inputs: ort_session.run(None, {"inputs": inputs})[0]


def load(artifact: Artifact) -> Forecaster:
    """The forecaster behind a ``forecaster``, ``onnx-forecaster`` or ``stat-forecaster`` artifact."""
    tails = load_history(artifact.path)
    if artifact.kind == "stat-forecaster":
        from forge_timeseries.statistical import load_stat_forecaster

        stat_spec, fitted = load_stat_forecaster(artifact.path)
        return StatForecaster(stat_spec, fitted, tails)
    spec = ForecasterSpec.load(artifact.path)
    if artifact.kind == "onnx-forecaster":
        return WindowForecaster(artifact.kind, spec, tails, onnx_runner(artifact.path / "model.onnx"))
    if artifact.kind != "forecaster":
        raise ForgeError(f"{artifact.path}: a {artifact.kind} artifact is not a forecaster ({', '.join(KINDS)})")
    import torch

    from forge_timeseries.model import load_forecaster

    _, model = load_forecaster(artifact.path)

    def run_model(inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(inputs)).numpy()

    return WindowForecaster(artifact.kind, spec, tails, run_model)
