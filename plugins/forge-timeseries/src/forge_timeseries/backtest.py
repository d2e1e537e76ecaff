"""Evaluator ``backtest``: a rolling-origin backtest of a forecasting artifact (``forecaster``, ``onnx-forecaster``,
``stat-forecaster``) on a series file, next to seasonal naive and the statistical baselines.

    forge eval runs/lstm-forecast-1 --suite backtest --data sales.csv --set n_windows=5 --set step=6

For every series the last ``n_windows`` forecast origins, ``step`` apart, each forecasting ``horizon`` steps (the
last window ends at the last point). The artifact forecasts from the history up to each origin with its trained
parameters; the baselines (SeasonalNaive, AutoETS, AutoARIMA, AutoTheta from statsforecast) are fitted on that same
history at every origin (``refit_baselines``). One record per series and window; metrics are means over them (MAE,
RMSE, sMAPE, MASE, interval coverage, MSIS) with 95% bootstrap intervals, resampling whole series for a panel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from forge import Artifact, ConfigError, DataError, EvalRequest, EvalResult, ForgeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forge_timeseries.recipe import ModelName


class BacktestOptions(BaseModel):
    """``--set`` options of the backtest suite."""

    model_config = ConfigDict(extra="forbid")

    n_windows: int = Field(3, ge=1, description="forecast origins per series")
    step: int | None = Field(None, ge=1, description="steps between origins (default: horizon)")
    horizon: int | None = Field(None, ge=1, description="steps per forecast (default: the artifact's)")
    baselines: list[ModelName] = Field(["AutoETS", "AutoARIMA", "AutoTheta"],
                                       description="statsforecast baselines (SeasonalNaive always)")
    refit_baselines: bool = Field(True, description="fit the baselines again at every origin")
    levels: list[float] | None = Field(None, description="interval levels (default: the artifact's)")
    n_jobs: int = Field(0, ge=0, description="worker processes for the baselines (0: one per core)")
    time_column: str | None = None
    target: str | None = None
    id_column: str | None = None
    fill: Literal["error", "interpolate", "ffill"] = "error"

    @field_validator("baselines", "levels", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: list[float] | None) -> list[float] | None:
        if levels is not None and any(not 0 < lv < 100 for lv in levels):
            raise ValueError("levels are percentages strictly between 0 and 100")
        return sorted(set(levels)) if levels is not None else None


def parse_options(options: dict[str, Any]) -> BacktestOptions:
    try:
        return BacktestOptions(**options)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "options"
        given = options.get(str(error["loc"][0]), "") if error["loc"] else ""
        known = ", ".join(BacktestOptions.model_fields)
        hint = f" (backtest options: {known})" if error["type"] == "extra_forbidden" else ""
        raise ConfigError(f"--set {field}={given}: {error['msg']}{hint}") from None


def default_data(artifact: Artifact) -> Path:
    data = (artifact.manifest.get("config") or {}).get("data")
    if not data or not Path(data).exists():
        raise ForgeError(f"{artifact.path}: backtest needs a series file: --data FILE (the training data "
                         f"{data or '(unknown)'} is not there)")
    return Path(data)


def evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult:
    from forge_timeseries import forecasters
    from forge_timeseries.metrics import interval_scores, mase_scale, model_key, scores
    from forge_timeseries.series import read_panel
    from forge_timeseries.statistical import SeriesTask, run_tasks

    options = parse_options(dict(request.options))
    forecaster = forecasters.load(artifact)
    data = Path(request.data) if request.data is not None else default_data(artifact)
    time_column = options.time_column or forecaster.time_column
    target = options.target or forecaster.columns[0]
    id_column = options.id_column if options.id_column is not None else forecaster.id_column
    if id_column and forecaster.id_column is None:
        raise ConfigError(f"--set id_column={id_column}: this {artifact.kind} was trained on one series; evaluate it "
                          "on a file of that series")
    panel = read_panel(data, time_column, target, forecaster.columns[1:], id_column, options.fill)
    horizon = options.horizon or forecaster.horizon
    if horizon > forecaster.max_steps:
        raise ConfigError(f"--set horizon={horizon}: this {artifact.kind} forecasts at most {forecaster.max_steps} "
                          "steps")
    step = options.step or horizon
    levels = tuple(options.levels) if options.levels is not None else forecaster.levels
    season = forecaster.season_length
    baselines = ("SeasonalNaive", *[b for b in options.baselines if b != "SeasonalNaive"])
    history_needed = max(forecaster.min_history, 2 * season, 3)
    if panel[0].freq != forecaster.freq:
        raise DataError(f"{data}: frequency {panel[0].freq}, but the artifact forecasts at {forecaster.freq}")

    plans: list[tuple[Any, list[int]]] = []
    for series in panel:
        key = series.id
        try:
            forecaster.check_series(key, has_history=True)
        except forecasters.QueryError as exc:
            raise DataError(f"{series.where()}: {exc}") from None
        n = len(series.values)
        origins = [n - horizon - k * step for k in reversed(range(options.n_windows))]
        if origins[0] < history_needed:
            needed = history_needed + horizon + (options.n_windows - 1) * step
            raise DataError(f"{series.where()}: {n} points are too few for {options.n_windows} windows of {horizon} "
                            f"steps every {step} after {history_needed} points of history (needs {needed})")
        plans.append((series, origins))
    request.log(f"backtest: {len(plans)} series × {options.n_windows} windows of {horizon} steps every {step}; "
                f"{artifact.kind} vs {', '.join(baselines)}")

    queries, owners = [], []
    for index, (series, origins) in enumerate(plans):
        key = series.id
        for k, origin in enumerate(origins):
            history = series.values[:origin] if forecaster.kind == "stat-forecaster" \
                else series.values[max(0, origin - forecaster.min_history):origin]
            queries.append(forecasters.Query(key, history, horizon, levels))
            owners.append((index, k))
    outputs: list[Any] = []
    bar = request.progress(total=len(queries), desc=f"{artifact.kind} forecasts")
    for start in range(0, len(queries), 256):
        if request.should_stop():
            raise KeyboardInterrupt
        outputs.extend(forecaster.forecast_many(queries[start:start + 256]))
        if bar is not None:
            bar.update(len(queries[start:start + 256]))
    if bar is not None:
        bar.close()
    for output, (index, _) in zip(outputs, owners, strict=True):
        if isinstance(output, forecasters.QueryError):
            raise DataError(f"{plans[index][0].where()}: {output}")

    tasks = [SeriesTask(target=s.values[:, 0], fit_end=origins[0], origins=origins, horizon=horizon, season=season,
                        models=baselines, levels=levels, refit=options.refit_baselines) for s, origins in plans]
    bar = request.progress(total=len(tasks), desc="baselines")
    baseline_results = run_tasks(tasks, options.n_jobs, on_done=bar.update if bar is not None else None,
                                 should_stop=request.should_stop)
    if bar is not None:
        bar.close()

    records: list[dict[str, Any]] = []
    values_by_metric: dict[str, list[float]] = {}
    groups: list[int] = []
    in_training = 0
    for (index, k), output in zip(owners, outputs, strict=True):
        series, origins = plans[index]
        origin = origins[k]
        target_values = series.values[:, 0]
        actual = target_values[origin:origin + horizon]
        scale = mase_scale(target_values[:origin], season)
        own = scores(actual, output.mean, scale)
        if levels:
            own.update(interval_scores(actual, output.lower, output.upper, scale))
        row: dict[str, float] = dict(own)
        others: dict[str, dict[str, float]] = {}
        result = baseline_results[index]
        for name in baselines:
            theirs = scores(actual, result.mean[name][k], scale)
            if levels:
                theirs.update(interval_scores(actual, {lv: result.lower[name][lv][k] for lv in levels},
                                              {lv: result.upper[name][lv][k] for lv in levels}, scale))
            others[name] = theirs
            row.update({f"{model_key(name)}_{m}": v for m, v in theirs.items()})
        until = forecaster.trained_until.get(series.id if series.id is not None else "")
        seen = until is not None and series.timestamps[origin] <= pd.Timestamp(until)
        in_training += bool(seen)
        for name, value in row.items():
            values_by_metric.setdefault(name, []).append(value)
        groups.append(index)
        records.append({
            "input": {"series": series.id, "origin": str(series.timestamps[origin]), "window": k,
                      "history_points": origin},
            "expected": actual.tolist(), "output": output.mean.tolist(), "score": own["mase"],
            **{m: v for m, v in own.items()},
            **({"interval": {f"{lv:g}": [output.lower[lv].tolist(), output.upper[lv].tolist()] for lv in levels}}
               if levels else {}),
            "baselines": others, "seen_in_training": bool(seen)})
    if in_training:
        request.log(f"warning: {in_training} of {len(records)} windows forecast data the artifact was trained on; "
                    "their errors are optimistic (evaluate on data after the training period)")

    per_example: dict[str, Sequence[float]] = dict(values_by_metric)
    metrics = {name: float(np.mean(values)) for name, values in per_example.items()}
    base_mase = {name: metrics[f"{model_key(name)}_mase"] for name in baselines}
    best = min(base_mase, key=lambda m: base_mase[m])
    metrics["best_baseline_mase"] = base_mase[best]
    # relative to the best baseline: below 1 beats it (a perfect baseline makes any error infinitely worse)
    metrics["relative_mase"] = metrics["mase"] / base_mase[best] if base_mase[best] > 0 else \
        (1.0 if metrics["mase"] == 0 else float("inf"))
    metrics["windows_seen_in_training"] = float(in_training)
    best_values = per_example[f"{model_key(best)}_mase"]
    intervals = {name: grouped_interval(values, groups, request.seed) for name, values in per_example.items()}
    intervals["best_baseline_mase"] = intervals[f"{model_key(best)}_mase"]
    intervals["relative_mase"] = grouped_interval(per_example["mase"], groups, request.seed,
                                                  denominator=best_values)
    verdict = "beats" if metrics["mase"] < base_mase[best] else "loses to"
    low, high = intervals["relative_mase"]
    request.log(f"backtest: MASE {metrics['mase']:.3f} {verdict} the best baseline {best} {base_mase[best]:.3f} "
                f"(relative MASE {metrics['relative_mase']:.3f}, 95% interval {low:.3f}-{high:.3f})")
    request.output_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_backtest(request.output_dir / "backtest.png", plans, outputs, owners, baseline_results, metrics,
                         intervals, artifact.kind, baselines, best, levels, horizon)
    return EvalResult(metrics=metrics, records=records, per_example=per_example, intervals=intervals, plots=[plot],
                      extra={"n_windows": options.n_windows, "step": step, "horizon": horizon, "series": len(plans),
                             "levels": list(levels), "baselines": list(baselines), "best_baseline": best,
                             "refit_baselines": options.refit_baselines, "data": str(data)})


def grouped_interval(values: Sequence[float], groups: Sequence[int], seed: int,
                     denominator: Sequence[float] | None = None) -> tuple[float, float]:
    """95% bootstrap interval of the mean of ``values`` (or of mean(values) / mean(denominator)), resampling whole
    groups (series) when there are several, single values otherwise: windows of one series are not independent
    of the other series' windows, but series are of each other."""
    from forge.evaluation import bootstrap_interval, mean_interval

    array = np.asarray(values, dtype=np.float64)
    below = np.asarray(denominator, dtype=np.float64) if denominator is not None else None
    owner = np.asarray(groups)
    unique = np.unique(owner)
    if below is None and len(unique) < 2:
        return mean_interval(array.tolist(), seed=seed)
    if len(unique) < 2:
        units = [np.array([i]) for i in range(len(array))]
    else:
        units = [np.flatnonzero(owner == g) for g in unique]
    sums = np.array([array[u].sum() for u in units])
    counts = np.array([len(u) for u in units], dtype=np.float64)
    below_sums = np.array([below[u].sum() for u in units]) if below is not None else counts

    def statistic(indices: np.ndarray) -> float:
        return float(sums[indices].sum() / below_sums[indices].sum()) if below_sums[indices].sum() else float("nan")

    return bootstrap_interval(len(units), statistic, seed=seed)


def plot_backtest(path: Path, plans: list[tuple[Any, list[int]]], outputs: list[Any], owners: list[tuple[int, int]],
                  baseline_results: list[Any], metrics: dict[str, float], intervals: dict[str, tuple[float, float]],
                  kind: str, baselines: Sequence[str], best: str, levels: Sequence[float], horizon: int) -> Path:
    """Up to three series with every window's forecast (and the widest interval) against the actuals and seasonal
    naive; then the mean MASE of each model with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forge_timeseries.metrics import model_key

    shown = list(range(min(3, len(plans))))
    fig, axes = plt.subplots(len(shown) + 1, 1, figsize=(9, 3.2 * (len(shown) + 1)), squeeze=False)
    widest = max(levels) if levels else None
    by_owner: Callable[[int], list[tuple[int, Any]]] = lambda i: [  # noqa: E731
        (k, out) for (j, k), out in zip(owners, outputs, strict=True) if j == i]
    for ax, index in zip(axes[:-1, 0], shown, strict=True):
        series, origins = plans[index]
        stamps, target = series.timestamps, series.values[:, 0]
        begin = max(0, origins[0] - 2 * horizon)
        ax.plot(stamps[begin:], target[begin:], color="black", linewidth=1, label="actual")
        for k, out in by_owner(index):
            future = stamps[origins[k]:origins[k] + horizon]
            if widest is not None:
                ax.fill_between(future, out.lower[widest], out.upper[widest], color="tab:blue", alpha=0.15,
                                linewidth=0, label=f"{widest:g}% interval" if k == 0 else None)
            ax.plot(future, out.mean, color="tab:blue", label="forecast" if k == 0 else None)
            ax.plot(future, baseline_results[index].mean["SeasonalNaive"][k], color="tab:orange", linestyle="--",
                    linewidth=1, label="seasonal naive" if k == 0 else None)
            if best != "SeasonalNaive":
                ax.plot(future, baseline_results[index].mean[best][k], color="tab:green", linestyle="-.",
                        linewidth=1, label=best if k == 0 else None)
        name = f" [{series.id}]" if series.id is not None else ""
        ax.set_title(f"{series.columns[0]}{name}: {len(origins)} backtest windows")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    ax = axes[-1, 0]
    names = [kind, *baselines]
    keys = ["mase", *[f"{model_key(b)}_mase" for b in baselines]]
    means = [metrics[k] for k in keys]
    errors = np.array([[metrics[k] - intervals[k][0], intervals[k][1] - metrics[k]] for k in keys]).T
    colors = ["tab:blue"] + ["tab:green" if b == best else "tab:gray" for b in baselines]
    ax.bar(names, means, yerr=np.maximum(errors, 0), capsize=4, color=colors)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set_ylabel("mean MASE (95% interval)")
    ax.set_title(f"relative MASE vs best baseline ({best}): {metrics['relative_mase']:.3f}")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
