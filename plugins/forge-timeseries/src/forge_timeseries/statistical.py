"""Nixtla statsforecast models for forge: AutoETS, AutoARIMA, AutoTheta and SeasonalNaive, fitted per series (in
parallel worker processes when there are many series), forecasting with their own prediction intervals; fitted
parameters stored as JSON + safetensors (no pickle).

The ``stat-forecast`` recipe, the baselines of ``lstm-forecast`` and the ``backtest`` evaluator all go through
:func:`fit_and_forecast`, so a model's numbers are the same wherever they are reported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

ModelName = Literal["AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"]
MODELS: tuple[str, ...] = ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive")
PARALLEL_FROM = 8  # series; below this, worker start-up costs more than it saves


def build_model(name: str, season: int) -> Any:
    """A fresh statsforecast model; ``season`` is its ``season_length``."""
    from statsforecast import models

    if name not in MODELS:
        raise ValueError(f"unknown statistical model {name!r}")
    return getattr(models, name)(season_length=season)


def restore_model(name: str, season: int, fitted: dict[str, Any]) -> Any:
    """A statsforecast model with its fitted state (``model_``) put back, ready for ``predict``/``forward``."""
    model = build_model(name, season)
    model.model_ = fitted
    return model


@dataclass
class SeriesTask:
    """Fit ``models`` on ``target[:fit_end]``; forecast ``horizon`` steps from each origin in ``origins``
    (``origin == fit_end``: the fitted model's own forecast; later origins: the fitted parameters applied to
    ``target[:origin]``, no refit: statsforecast's ``forward``). ``refit``: fit again at every origin instead."""

    target: np.ndarray
    fit_end: int
    origins: list[int]
    horizon: int
    season: int
    models: tuple[str, ...]
    levels: tuple[float, ...] = (80.0, 95.0)
    keep_params: bool = False
    refit: bool = False


@dataclass
class SeriesForecasts:
    """Per model: ``mean`` (origins, horizon), ``lower``/``upper`` {level: (origins, horizon)}; the fitted state when
    asked for; and the models that failed on this series (replaced by SeasonalNaive), with why."""

    mean: dict[str, np.ndarray] = field(default_factory=dict)
    lower: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    upper: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _interval_keys(out: dict[str, Any], levels: Sequence[float]) -> tuple[dict[float, np.ndarray], ...]:
    lower = {lv: np.asarray(out[f"lo-{lv:g}"], dtype=np.float64) for lv in levels}
    upper = {lv: np.asarray(out[f"hi-{lv:g}"], dtype=np.float64) for lv in levels}
    return lower, upper


def _levels_arg(levels: Sequence[float]) -> list[Any]:
    # statsforecast names interval columns f"lo-{level}": pass 80 (not 80.0) so the names are "lo-80"
    return [int(lv) if float(lv).is_integer() else float(lv) for lv in levels]


def forecast_model(model: Any, history: np.ndarray | None, horizon: int, levels: Sequence[float]
                   ) -> tuple[np.ndarray, dict[float, np.ndarray], dict[float, np.ndarray]]:
    """Mean and intervals from a fitted model: continuing its own series (``history`` None) or applied to
    ``history`` (statsforecast ``forward``)."""
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        level = _levels_arg(levels) if levels else None
        if history is None:
            out = model.predict(h=horizon, level=level)
        else:
            out = model.forward(y=np.asarray(history, dtype=np.float64), h=horizon, level=level)
    lower, upper = _interval_keys(out, levels)
    return np.asarray(out["mean"], dtype=np.float64), lower, upper


def _fit(name: str, season: int, y: np.ndarray) -> Any:
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # statsforecast warns about short series and ill-conditioned fits
        return build_model(name, season).fit(np.asarray(y, dtype=np.float64))


def fit_and_forecast(task: SeriesTask) -> SeriesForecasts:
    """One series, every model of the task (see :class:`SeriesTask`)."""
    result = SeriesForecasts()
    fallback: tuple[np.ndarray, dict[float, np.ndarray], dict[float, np.ndarray]] | None = None
    for name in task.models:
        try:
            means, lowers, uppers = [], [], []
            model = _fit(name, task.season, task.target[:task.fit_end])
            for origin in task.origins:
                if task.refit and origin != task.fit_end:
                    model = _fit(name, task.season, task.target[:origin])
                history = None if origin == task.fit_end or task.refit else task.target[:origin]
                mean, lower, upper = forecast_model(model, history, task.horizon, task.levels)
                if not np.isfinite(mean).all():
                    raise FloatingPointError("non-finite forecast")
                means.append(mean)
                lowers.append(lower)
                uppers.append(upper)
            if task.keep_params:
                result.params[name] = model.model_
        except Exception as exc:  # one series must not sink a panel: record it, fall back to seasonal naive
            result.failures[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            if fallback is None:
                fallback = _seasonal_naive_fallback(task)
            result.mean[name], result.lower[name], result.upper[name] = fallback
            if task.keep_params:
                result.params[name] = _fit("SeasonalNaive", task.season, task.target[:task.fit_end]).model_
            continue
        empty = np.zeros((0, task.horizon))
        result.mean[name] = np.stack(means) if means else empty
        result.lower[name] = {lv: np.stack([x[lv] for x in lowers]) if lowers else empty for lv in task.levels}
        result.upper[name] = {lv: np.stack([x[lv] for x in uppers]) if uppers else empty for lv in task.levels}
    return result


def _seasonal_naive_fallback(
        task: SeriesTask) -> tuple[np.ndarray, dict[float, np.ndarray], dict[float, np.ndarray]]:
    model = _fit("SeasonalNaive", task.season, task.target[:task.fit_end])
    outs = [forecast_model(model, None if o == task.fit_end else task.target[:o], task.horizon, task.levels)
            for o in task.origins]
    if not outs:
        empty = np.zeros((0, task.horizon))
        return empty, {lv: empty for lv in task.levels}, {lv: empty for lv in task.levels}
    return (np.stack([o[0] for o in outs]), {lv: np.stack([o[1][lv] for o in outs]) for lv in task.levels},
            {lv: np.stack([o[2][lv] for o in outs]) for lv in task.levels})


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (stop cleanly), not ours


def _run_chunk(tasks: list[SeriesTask]) -> list[SeriesForecasts]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one process per core; no nested BLAS threads
        return [fit_and_forecast(t) for t in tasks]


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_tasks(tasks: Sequence[SeriesTask], jobs: int | None = None, on_done: Callable[[int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> list[SeriesForecasts]:
    """:func:`fit_and_forecast` for every task, in ``jobs`` worker processes when there are enough series (default:
    one per available core), results in task order. ``on_done(n)`` is told as each group of ``n`` series finishes;
    when ``should_stop()`` turns true the remaining work is dropped and KeyboardInterrupt raised."""
    jobs = default_jobs() if jobs is None or jobs <= 0 else jobs
    stop = should_stop or (lambda: False)
    if jobs == 1 or len(tasks) < PARALLEL_FROM:
        results = []
        for task in tasks:
            if stop():
                raise KeyboardInterrupt
            results.append(fit_and_forecast(task))
            if on_done:
                on_done(1)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    size = max(1, min(50, math.ceil(len(tasks) / (jobs * 8))))  # small chunks: even load, steady progress
    chunks = [list(tasks[i:i + size]) for i in range(0, len(tasks), size)]
    done: dict[int, list[SeriesForecasts]] = {}
    # spawn, not fork: the parent may hold torch's thread pools, which a forked child must not inherit
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_interrupts)
    try:
        futures = {pool.submit(_run_chunk, chunk): i for i, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if on_done:
                on_done(len(done[futures[future]]))
            if stop():
                raise KeyboardInterrupt
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for i in range(len(chunks)) for r in done[i]]


# -- fitted state as JSON + safetensors (no pickle) --------------------------------------------------------------

def encode_state(state: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able tree for a fitted statsforecast state; arrays go to ``arrays`` under ``prefix/path`` keys."""
    if isinstance(state, dict):
        return {str(k): encode_state(v, f"{prefix}/{k}", arrays) for k, v in state.items()}
    if isinstance(state, tuple):
        return {"__tuple__": [encode_state(v, f"{prefix}/{i}", arrays) for i, v in enumerate(state)]}
    if isinstance(state, list):
        return [encode_state(v, f"{prefix}/{i}", arrays) for i, v in enumerate(state)]
    if isinstance(state, np.ndarray):
        if state.dtype == object:
            raise TypeError(f"{prefix}: object array in a fitted model")
        arrays[prefix] = np.ascontiguousarray(state)
        return {"__array__": prefix}
    if hasattr(state, "to_numpy") and hasattr(state, "index"):  # a pandas Series some statsforecast versions keep
        return encode_state(state.to_numpy(), prefix, arrays)
    if isinstance(state, np.generic):
        state = state.item()
    if isinstance(state, float) and not math.isfinite(state):
        return {"__float__": repr(state)}
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"{prefix}: cannot store a {type(state).__name__} from a fitted model")


def decode_state(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, list):
        return [decode_state(v, arrays) for v in tree]
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        if set(tree) == {"__tuple__"}:
            return tuple(decode_state(v, arrays) for v in tree["__tuple__"])
        if set(tree) == {"__float__"}:
            return float(tree["__float__"])
        return {k: decode_state(v, arrays) for k, v in tree.items()}
    return tree


STAT_SPEC = "statsforecast.json"
PARAMS = "params.safetensors"


@dataclass
class StatForecasterSpec:
    """A ``stat-forecaster`` artifact: ``statsforecast.json`` (this, with each series' fitted state as a tree whose
    arrays live in ``params.safetensors``) and ``history.json``."""

    models: list[str]
    primary: str
    season_length: int
    freq: str
    horizon: int
    columns: list[str]
    time_column: str
    id_column: str | None
    levels: list[float]
    series: list[dict[str, Any]]  # [{"id": ..., "models": {name: state tree}}]
    trained_until: dict[str, str] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # series id → model → why it fell back
    statsforecast_version: str = ""
    interval_method: str = "model"  # "conformal": mean ± calibration widths × series scale
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)  # model → IntervalCalibration fields
    series_scale: dict[str, float] = field(default_factory=dict)  # series id ("" for one) → MASE scale


def save_stat_forecaster(directory: Path, spec: StatForecasterSpec,
                         fitted: Sequence[tuple[str | None, dict[str, dict[str, Any]]]]) -> None:
    """Write ``statsforecast.json`` + ``params.safetensors`` for ``fitted`` [(series id, {model: state})]."""
    from safetensors.numpy import save_file

    arrays: dict[str, np.ndarray] = {}
    spec.series = [{"id": key, "models": {name: encode_state(state, f"{i}/{name}", arrays)
                                          for name, state in states.items()}}
                   for i, (key, states) in enumerate(fitted)]
    save_file(arrays, str(directory / PARAMS))
    (directory / STAT_SPEC).write_text(json.dumps(asdict(spec)))


def load_stat_forecaster(directory: Path) -> tuple[StatForecasterSpec, dict[str | None, dict[str, Any]]]:
    """The spec and, per series id, its fitted statsforecast models."""
    from safetensors.numpy import load_file

    spec = StatForecasterSpec(**json.loads((directory / STAT_SPEC).read_text()))
    arrays = load_file(str(directory / PARAMS))
    fitted = {entry["id"]: {name: restore_model(name, spec.season_length, decode_state(tree, arrays))
                            for name, tree in entry["models"].items()}
              for entry in spec.series}
    return spec, fitted
