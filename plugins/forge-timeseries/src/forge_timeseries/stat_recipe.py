"""Recipe ``stat-forecast``: Nixtla statsforecast models (AutoETS, AutoARIMA, AutoTheta, SeasonalNaive) per series,
for one series or many (an id column; the series are fitted in parallel worker processes).

    forge run --recipe stat-forecast --data passengers.csv --set horizon=12
    forge run --recipe stat-forecast --data sales.csv --set id_column=store --set 'models=[AutoETS,AutoTheta]'

The same data contract, chronological split and metrics as ``lstm-forecast``: each model is fitted on the training
part of each series; its forecasts from the validation origins pick the ``primary`` model (``auto``: the lowest mean
validation MASE over series), and its forecasts from the test origins (the fitted parameters applied to the
history up to each origin, no refit) give the test metrics, with the models' own 80%/95% prediction intervals and
their coverage. The artifact (``stat-forecaster``) holds every model refitted on the whole of each series, as JSON +
safetensors (no pickle); ``forge serve`` answers ``/forecast`` with it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import numpy as np
from forge import ArtifactResult, RunContext
from pydantic import Field, model_validator

from forge_timeseries.recipe import ModelName, SeriesConfig, dataset_facts, describe_panel


class StatForecastConfig(SeriesConfig):
    models: list[ModelName] = Field(["AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"], min_length=1,
                                    description="statsforecast models to fit, each per series")
    primary: ModelName | Literal["auto"] = Field("auto", description="the model /forecast answers with by default "
                                                                     "(auto: best validation MASE)")
    intervals: Literal["auto", "conformal", "model"] = Field(
        "auto", description="conformal on validation errors, the models' own, or auto: conformal when there are "
                            "enough validation errors")

    @model_validator(mode="after")
    def _primary_is_fitted(self) -> StatForecastConfig:
        if self.primary != "auto" and self.primary not in self.models:
            raise ValueError(f"primary: {self.primary} is not in models ({', '.join(self.models)})")
        self.models = list(dict.fromkeys(self.models))
        return self


def train(ctx: RunContext, config: StatForecastConfig) -> ArtifactResult:
    import statsforecast

    from forge_timeseries.forecasters import SeriesTail, save_history
    from forge_timeseries.metrics import model_key, scores
    from forge_timeseries.report import (
        ModelForecast,
        build_report,
        compare,
        comparison_line,
        flat_metrics,
        plot_forecasts,
        write_series_metrics,
    )
    from forge_timeseries.series import read_panel, season_length
    from forge_timeseries.spec import IntervalCalibration
    from forge_timeseries.split import plan_splits
    from forge_timeseries.statistical import SeriesTask, StatForecasterSpec, run_tasks, save_stat_forecaster

    panel = read_panel(config.data, config.time_column, config.target, [], config.id_column, config.fill)
    horizon = config.horizon
    season = config.season_length or season_length(panel[0].freq)
    splits = plan_splits(panel, horizon, config.val_size, config.test_size, season, min_train=max(2 * season, 3))
    levels = tuple(config.levels)
    names = tuple(config.models)
    ctx.log(f"{describe_panel(splits, season)}; models {', '.join(names)}; statsforecast {statsforecast.__version__}")
    ctx.record(dataset=dataset_facts(splits, season))

    tasks = [SeriesTask(target=s.series.values[:, 0], fit_end=s.val_start, origins=s.val_origins + s.test_origins,
                        horizon=horizon, season=season, models=names, levels=levels) for s in splits]
    bar = ctx.progress(total=len(tasks), desc="fit + test")
    results = run_tasks(tasks, config.n_jobs, on_done=bar.update, should_stop=lambda: ctx.should_stop)
    bar.close()

    validation: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, list[np.ndarray]] = {name: [] for name in names}  # scaled validation errors, per series
    masks: list[np.ndarray] = []
    for split, result in zip(splits, results, strict=True):
        target, n_val = split.series.values[:, 0], len(split.val_origins)
        inside = (np.asarray(split.val_origins)[:, None] + np.arange(horizon)[None, :]) < split.test_start
        masks.append(inside)
        padded = np.concatenate([target, np.full(horizon, np.nan)])
        actual = np.stack([padded[o:o + horizon] for o in split.val_origins])
        for name in names:
            predicted = result.mean[name][:n_val]
            validation[name].append(scores(actual[inside], predicted[inside], split.scale)["mase"])
            errors[name].append(np.where(inside, (actual - predicted) / split.scale, 0.0))
    validation_mase = {name: float(np.mean(values)) for name, values in validation.items()}
    calibration_errors = int(sum(m.sum() for m in masks))
    method = config.intervals
    if method == "auto":
        method = "conformal" if calibration_errors >= 2 * 100 / (100 - max(levels)) else "model"
    calibrations = {name: IntervalCalibration.fit(np.concatenate(errors[name]), np.concatenate(masks))
                    for name in names} if method == "conformal" else {}
    ctx.log(f"intervals: {_describe_intervals(method, calibration_errors, config.intervals)}")
    forecasts: list[dict[str, ModelForecast]] = []
    for split, result in zip(splits, results, strict=True):
        n_val = len(split.val_origins)
        by_model: dict[str, ModelForecast] = {}
        for name in names:
            mean = result.mean[name][n_val:]
            if method == "conformal":
                widths = {lv: calibrations[name].widths(lv, horizon) * split.scale for lv in levels}
                by_model[name] = ModelForecast(mean, {lv: mean - w for lv, w in widths.items()},
                                               {lv: mean + w for lv, w in widths.items()})
            else:
                by_model[name] = ModelForecast(mean, {lv: a[n_val:] for lv, a in result.lower[name].items()},
                                               {lv: a[n_val:] for lv, a in result.upper[name].items()})
        forecasts.append(by_model)
    primary = config.primary if config.primary != "auto" else min(names, key=lambda m: validation_mase[m])
    ctx.log("validation MASE: " + " · ".join(f"{m} {v:.3f}" for m, v in sorted(validation_mase.items(),
                                                                               key=lambda kv: kv[1]))
            + f"; primary model: {primary}" + (" (auto: best on validation)" if config.primary == "auto" else ""))
    failures = {s.key: r.failures for s, r in zip(splits, results, strict=True) if r.failures}
    if failures:
        count = sum(len(f) for f in failures.values())
        ctx.log(f"{count} model fit(s) failed and fell back to seasonal naive: " + "; ".join(
            f"{model} on {'series ' + repr(key) if key else 'the series'}: {why}"
            for key, f in list(failures.items())[:3] for model, why in f.items()))
    if ctx.should_stop:
        return ArtifactResult(kind="stat-forecaster")

    ordered = [primary, *[m for m in names if m != primary]]
    report = build_report(splits, forecasts, ordered, horizon)
    comparison = compare(report, primary, seed=config.seed)
    metrics = flat_metrics(report, primary)
    metrics.update({f"{model_key(m)}_validation_mase": v for m, v in validation_mase.items()})
    ctx.log(comparison_line(comparison, alarm="on test, "))
    own = report.aggregated[primary]
    ctx.log(f"test ({primary}): MASE {own['mase']:.3f}, sMAPE {own['smape']:.2f}%; "
            + ", ".join(f"{lv:g}% interval coverage {own[f'coverage_{lv:g}']:.2f}" for lv in levels))
    ctx.log_metrics({k: v for k, v in metrics.items() if k.startswith("test_")})
    write_series_metrics(ctx.run_dir / "series_metrics.csv", report)

    # The artifact: every model refitted on the whole of each series (what a forecast of the future should use).
    final = [SeriesTask(target=s.series.values[:, 0], fit_end=s.n, origins=[], horizon=horizon, season=season,
                        models=names, levels=levels, keep_params=True) for s in splits]
    bar = ctx.progress(total=len(final), desc="refit on all data")
    fitted = run_tasks(final, config.n_jobs, on_done=bar.update, should_stop=lambda: ctx.should_stop)
    bar.close()
    final_failures = {s.key: r.failures for s, r in zip(splits, fitted, strict=True) if r.failures}
    ctx.record(comparison=comparison, primary_model=primary, validation_mase=validation_mase,
               series_metrics="series_metrics.csv",
               intervals={"method": method, "calibration_errors": calibration_errors},
               **({"fit_failures": {"test": failures, "final": final_failures}}
                  if failures or final_failures else {}))
    out = ctx.artifact_dir
    out.mkdir(parents=True, exist_ok=True)
    spec = StatForecasterSpec(models=list(names), primary=primary, season_length=season, freq=panel[0].freq,
                              horizon=horizon, columns=[config.target], time_column=config.time_column,
                              id_column=config.id_column, levels=list(levels), series=[],
                              trained_until={s.key: str(s.series.timestamps[-1]) for s in splits},
                              interval_method=method,
                              calibration={name: asdict(c) for name, c in calibrations.items()},
                              series_scale={s.key: s.scale for s in splits},
                              failures=final_failures, statsforecast_version=statsforecast.__version__)
    save_stat_forecaster(out, spec, [(s.series.id, r.params) for s, r in zip(splits, fitted, strict=True)])
    keep = max(2 * season, horizon, 24)
    save_history(out, {s.series.id: SeriesTail(s.series.timestamps[-keep:], s.series.values[-keep:]) for s in splits})
    plot = plot_forecasts(ctx.run_dir / "forecast.png", report, primary, comparison.get("best_baseline"),
                          config.target)
    ctx.attach(plot)
    return ArtifactResult(kind="stat-forecaster", metrics=metrics, extra={
        "horizon": horizon, "freq": panel[0].freq, "columns": [config.target], "id_column": config.id_column,
        "series": len(splits), "levels": list(levels), "models": list(names), "primary": primary,
        "intervals": method, "comparison": comparison})


def _describe_intervals(method: str, errors: int, asked: str) -> str:
    if method == "model":
        why = f" (auto: {errors} validation errors are too few to calibrate)" if asked == "auto" else ""
        return f"the models' own{why}"
    return f"split conformal on {errors} validation errors per model"
