"""Recipe ``lstm-forecast``: a multi-step LSTM forecaster for one series or many (an id column: one global model
over all series, each scaled by its own training part), plus optional numeric covariates.

    forge run --recipe lstm-forecast --data passengers.csv --set horizon=12 --set window=24 --set log_transform=true
    forge run --recipe lstm-forecast --data sales.csv --set id_column=store --set horizon=6 --set window=12

Chronological split per series (never shuffled across time): train | validation (``val_size``) | test
(``test_size``, both default to ``horizon``). Scaling is fitted on the training part only. Early stopping on
validation loss, the best weights kept. The validation errors calibrate the prediction intervals (normalised split
conformal). Test metrics: MAE, RMSE, sMAPE, MASE and interval coverage, with the statistical baselines' (seasonal
naive, AutoETS, AutoARIMA, AutoTheta from statsforecast, fitted on the same training part) beside them; the run log
and the manifest say when a baseline wins.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from forge import ArtifactResult, DataError, DataFile, RecipeConfig, RunContext
from forge.config import NanPolicy
from pydantic import Field, field_validator, model_validator

ModelName = Literal["AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"]


class SeriesConfig(RecipeConfig):
    """The data contract and split both forecasting recipes share."""

    data: DataFile = Field(description="CSV/TSV/Parquet/Arrow with a time column and a target column")
    time_column: str = Field("date", min_length=1)
    target: str = Field("value", min_length=1)
    id_column: str | None = Field(None, min_length=1, description="column naming the series of each row (many "
                                  "series)")
    horizon: int = Field(12, ge=1, description="steps forecast at once")
    season_length: int | None = Field(None, ge=1, description="for seasonal models / MASE (default: from freq)")
    val_size: int | None = Field(None, ge=1, description="validation steps per series (default: horizon)")
    test_size: int | None = Field(None, ge=1, description="test steps per series (default: horizon)")
    fill: Literal["error", "interpolate", "ffill"] = Field("error", description="what to do with missing steps")
    levels: list[float] = Field([80.0, 95.0], min_length=1, max_length=10,
                                description="prediction interval levels, percent")
    n_jobs: int = Field(0, ge=0, le=1024, description="worker processes for the statistical models (0: one per core)")

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: list[float]) -> list[float]:
        bad = [lv for lv in levels if not 0 < lv < 100]
        if bad:
            raise ValueError(f"levels are percentages strictly between 0 and 100, got {bad[0]:g}")
        return sorted(set(levels))


    @model_validator(mode="after")
    def _distinct_columns(self) -> SeriesConfig:
        if self.target == self.time_column:
            raise ValueError(f"target: '{self.target}' is also the time_column")
        if self.id_column is not None and self.id_column in (self.target, self.time_column):
            raise ValueError(f"id_column: '{self.id_column}' is also the target or time_column")
        return self


class ForecastConfig(SeriesConfig):
    covariates: list[Annotated[str, Field(min_length=1)]] = Field([], description="extra numeric input columns "
                                                                  "(past values only)")
    window: int = Field(24, ge=2, description="past steps the model sees")
    log_transform: bool = Field(False, description="model log(values): multiplicative seasonality")
    lstm_units: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        [128, 64], min_length=1, description="units of each stacked LSTM layer")
    dropout: float = Field(0.2, ge=0, lt=1)
    dense_units: int = Field(32, ge=1, le=65_536)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(300, ge=1)
    patience: int = Field(30, ge=1, description="early stopping: epochs without validation improvement")
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints")
    baselines: list[ModelName] = Field(["AutoETS", "AutoARIMA", "AutoTheta"],
                                       description="statsforecast models fitted beside it (SeasonalNaive always)")
    nan_policy: NanPolicy = Field("stop", description="training loss NaN/inf: stop (the run fails at that epoch, its "
                                  "last good checkpoint kept) or continue (the best validation weights are kept)")

    @field_validator("covariates")
    @classmethod
    def _distinct_covariates(cls, names: list[str]) -> list[str]:
        repeated = [n for n in names if names.count(n) > 1]
        if repeated:
            raise ValueError(f"'{repeated[0]}' is named twice")
        return names


def windows_at(values: np.ndarray, origins: list[int], window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.stack([values[t - window:t] for t in origins])
    future = np.stack([values[t:t + horizon, 0] for t in origins])
    return inputs, future


def _save_state(directory: Path, model: Any, optimizer: Any, best: dict[str, Any], generator: Any,
                progress: dict[str, Any]) -> None:
    """Checkpoint without pickle: tensors in safetensors, the rest in JSON."""
    import torch
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "model.safetensors")
    save_file({k: v.contiguous() for k, v in best.items()}, directory / "best.safetensors")
    optimizer_state = optimizer.state_dict()
    tensors = {f"{i}.{name}": (value if torch.is_tensor(value) else torch.tensor(value))
               for i, state in optimizer_state["state"].items() for name, value in state.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    tensors["rng.shuffle"] = generator.get_state()
    save_file(tensors, directory / "optimizer.safetensors")
    (directory / "progress.json").write_text(json.dumps({**progress, "param_groups": optimizer_state["param_groups"]}))


def _load_state(directory: Path, model: Any, optimizer: Any, generator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch
    from safetensors.torch import load_file

    model.load_state_dict(load_file(directory / "model.safetensors"))
    best = load_file(directory / "best.safetensors")
    tensors = load_file(directory / "optimizer.safetensors")
    progress = json.loads((directory / "progress.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": progress.pop("param_groups")})
    torch.set_rng_state(tensors["rng.cpu"])
    generator.set_state(tensors["rng.shuffle"])
    return best, progress


def describe_panel(splits: list[Any], season: int) -> str:
    first = splits[0].series
    if len(splits) == 1:
        return f"series: {splits[0].n} points, freq {first.freq}, season {season}; filled {first.filled}"
    lengths = [s.n for s in splits]
    return (f"{len(splits)} series, {min(lengths)}-{max(lengths)} points each ({sum(lengths)} in all), freq "
            f"{first.freq}, season {season}; filled {sum(s.series.filled for s in splits)}")


def dataset_facts(splits: list[Any], season: int) -> dict[str, Any]:
    first = splits[0]
    facts: dict[str, Any] = {"points": sum(s.n for s in splits), "freq": first.series.freq, "season_length": season,
                             "filled": sum(s.series.filled for s in splits),
                             "train_end": str(first.series.timestamps[first.val_start - 1]),
                             "test_start": str(first.series.timestamps[first.test_start])}
    if len(splits) > 1 or first.series.id is not None:
        facts["series"] = len(splits)
        facts.pop("train_end")
        facts.pop("test_start")
    return facts


def fit_baselines(ctx: RunContext, splits: list[Any], names: tuple[str, ...], horizon: int, season: int,
                  levels: tuple[float, ...], jobs: int) -> tuple[list[Any], dict[str, dict[str, str]]]:
    """statsforecast models fitted on each series' training part, forecasting from its test origins."""
    from forge_timeseries.statistical import SeriesTask, run_tasks

    tasks = [SeriesTask(target=s.series.values[:, 0], fit_end=s.val_start, origins=s.test_origins, horizon=horizon,
                        season=season, models=names, levels=levels) for s in splits]
    bar = ctx.progress(total=len(tasks), desc="baselines")
    results = run_tasks(tasks, jobs, on_done=bar.update, should_stop=lambda: ctx.should_stop)
    bar.close()
    failures = {s.key: r.failures for s, r in zip(splits, results, strict=True) if r.failures}
    if failures:
        count = sum(len(f) for f in failures.values())
        key, first = next(iter(failures.items()))
        model, why = next(iter(first.items()))
        ctx.log(f"{count} baseline fit(s) failed and fell back to seasonal naive, e.g. {model} on "
                f"{'series ' + repr(key) if key else 'the series'}: {why}")
    return results, failures


def train(ctx: RunContext, config: ForecastConfig) -> ArtifactResult:
    import torch
    from safetensors.torch import save_file

    from forge_timeseries.forecasters import SeriesTail, save_history
    from forge_timeseries.model import LSTMForecaster
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
    from forge_timeseries.spec import ForecasterSpec, IntervalCalibration, WindowTransform
    from forge_timeseries.split import plan_splits

    panel = read_panel(config.data, config.time_column, config.target, config.covariates, config.id_column,
                       config.fill)
    horizon, window = config.horizon, config.window
    season = config.season_length or season_length(panel[0].freq)
    splits = plan_splits(panel, horizon, config.val_size, config.test_size, season, window=window)
    if config.log_transform:
        for split in splits:
            if (split.series.values <= 0).any():
                raise DataError(f"{split.series.where()}: log_transform needs positive values; column "
                                f"'{config.target}' has some ≤ 0")
    levels = tuple(config.levels)
    many = config.id_column is not None
    ctx.log(f"{describe_panel(splits, season)}; train windows {sum(len(s.train_origins) for s in splits)}, "
            f"validation {sum(len(s.val_origins) for s in splits)}, "
            f"test origins {sum(len(s.test_origins) for s in splits)}")
    transforms = [WindowTransform.fit(s.series.values[:s.val_start], config.log_transform) for s in splits]
    scales = np.asarray([t.scales for t in transforms])
    spec = ForecasterSpec(n_features=len(panel[0].columns), horizon=horizon, window=window,
                          lstm_units=config.lstm_units, dropout=config.dropout, dense_units=config.dense_units,
                          columns=panel[0].columns, time_column=config.time_column, freq=panel[0].freq,
                          season_length=season,
                          transform={"log": config.log_transform, "scales": np.median(scales, axis=0).tolist()},
                          id_column=config.id_column,
                          series_scales={s.key: list(t.scales) for s, t in zip(splits, transforms, strict=True)}
                          if many else {},
                          levels=list(levels),
                          # validation steers early stopping and calibrates intervals: seen, in that sense
                          trained_until={s.key: str(s.series.timestamps[s.test_start - 1]) for s in splits})
    ctx.record(dataset=dataset_facts(splits, season))

    def stacked(which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Model inputs and targets of every series' ``which`` origins, with each window's series and origin."""
        xs, ys, owners, origins = [], [], [], []
        for index, (split, transform) in enumerate(zip(splits, transforms, strict=True)):
            at = getattr(split, f"{which}_origins")
            inputs, future = windows_at(split.series.values, at, window, horizon)
            xs.append(transform.inputs(inputs))
            ys.append(transform.targets(inputs, future))
            owners.append(np.full(len(at), index))
            origins.append(np.asarray(at))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(owners), np.concatenate(origins)

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = LSTMForecaster.from_spec(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    train_x, train_y, _, _ = stacked("train")
    val_x, val_y, val_owner, val_origin = stacked("val")
    tx, ty = torch.from_numpy(train_x), torch.from_numpy(train_y)
    vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    progress: dict[str, Any] = {"epoch": 0, "best_val": float("inf"), "bad_epochs": 0}
    if ctx.resume_from is not None:
        best, progress = _load_state(ctx.resume_from, model, optimizer, generator)
        ctx.log(f"resumed after epoch {progress['epoch']}")
    loss_fn = torch.nn.MSELoss()
    bar = ctx.progress(total=config.max_epochs, desc="epochs")

    def finite(value: float, epoch: int) -> bool:
        """nan_policy: stop raises TrainingDiverged before the update (the progress bar closed, so the error gets
        its own line); continue says so once."""
        if math.isfinite(value):
            return True
        if config.nan_policy == "stop":
            bar.close()
        return ctx.check_loss(value, epoch, config.nan_policy, unit="epoch")

    bar.update(progress["epoch"])
    for epoch in range(progress["epoch"] + 1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(len(tx), generator=generator)
        total = 0.0
        for start in range(0, len(tx), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(tx[batch]), ty[batch])
            value = loss.item()
            if not finite(value, epoch):
                continue  # nan_policy continue: skip this batch's update rather than poison the weights
            loss.backward()
            optimizer.step()
            total += value * len(batch)
        model.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(model(vx), vy))
        finite(val_loss, epoch)
        improved = val_loss < progress["best_val"] - 1e-9
        if improved:
            best = {k: v.clone() for k, v in model.state_dict().items()}
        progress.update(epoch=epoch, best_val=val_loss if improved else progress["best_val"],
                        bad_epochs=0 if improved else progress["bad_epochs"] + 1)
        ctx.log_metrics({"train_loss": total / len(tx), "val_loss": val_loss}, step=epoch)
        bar.update(1)
        bar.set_postfix(train=f"{total / len(tx):.4f}", val=f"{val_loss:.4f}")
        stop_early = progress["bad_epochs"] >= config.patience
        if epoch % config.checkpoint_every == 0 or ctx.should_stop or stop_early:
            snapshot = dict(best)

            def write(directory: Path, best_state: dict[str, Any] = snapshot) -> None:
                _save_state(directory, model, optimizer, best_state, generator, progress)

            ctx.save_checkpoint(epoch, write)
        if ctx.should_stop:
            bar.close()
            return ArtifactResult(kind="forecaster")
        if stop_early:
            ctx.log(f"early stop after epoch {epoch}: no validation improvement in {config.patience} epochs")
            break
    bar.close()
    model.load_state_dict(best)
    model.eval()

    # Intervals: validation errors on targets the model never trained on (at or after each series' val_start).
    with torch.inference_mode():
        val_errors = (vy - model(vx)).numpy().astype(np.float64)
    val_starts = np.asarray([s.val_start for s in splits])[val_owner]
    out_of_sample = (val_origin[:, None] + np.arange(horizon)[None, :]) >= val_starts[:, None]
    calibration = IntervalCalibration.fit(val_errors, out_of_sample)
    spec.intervals = asdict(calibration)
    ctx.log(f"intervals: split conformal on {int(out_of_sample.sum())} validation errors; "
            + ", ".join(f"{lv:g}% half-width at step 1 / {horizon}: {calibration.widths(lv, horizon)[0]:.2f} / "
                        f"{calibration.widths(lv, horizon)[-1]:.2f} scaled units" for lv in levels))
    if int(out_of_sample.sum()) < 100 / (100 - max(levels)):
        ctx.log(f"warning: {int(out_of_sample.sum())} calibration errors are too few for a {max(levels):g}% interval"
                " (it uses the largest); a longer val_size gives more")

    forecasts: list[dict[str, ModelForecast]] = []
    for split, transform in zip(splits, transforms, strict=True):
        inputs, _ = windows_at(split.series.values, split.test_origins, window, horizon)
        with torch.inference_mode():
            predicted = model(torch.from_numpy(transform.inputs(inputs))).numpy().astype(np.float64)
        widths = {lv: calibration.widths(lv, horizon) for lv in levels}
        forecasts.append({"LSTM": ModelForecast(
            mean=transform.outputs(inputs, predicted),
            lower={lv: transform.outputs(inputs, predicted - w) for lv, w in widths.items()},
            upper={lv: transform.outputs(inputs, predicted + w) for lv, w in widths.items()})})
    names = ("SeasonalNaive", *[b for b in config.baselines if b != "SeasonalNaive"])
    baseline_results, failures = fit_baselines(ctx, splits, names, horizon, season, levels, config.n_jobs)
    for by_model, result in zip(forecasts, baseline_results, strict=True):
        by_model.update({name: ModelForecast(result.mean[name], result.lower[name], result.upper[name])
                         for name in names})
    report = build_report(splits, forecasts, ["LSTM", *names], horizon)
    comparison = compare(report, "LSTM", seed=config.seed)
    metrics = flat_metrics(report, "LSTM")
    metrics["best_val_loss"] = progress["best_val"]
    metrics["epochs"] = progress["epoch"]
    ctx.log(comparison_line(comparison))
    own, naive = report.aggregated["LSTM"], report.aggregated["SeasonalNaive"]
    ctx.log(f"test: MASE {own['mase']:.3f} vs seasonal naive {naive['mase']:.3f}; sMAPE {own['smape']:.2f}% vs "
            f"{naive['smape']:.2f}%; " + ", ".join(f"{lv:g}% interval coverage {own[f'coverage_{lv:g}']:.2f}"
                                                  for lv in levels))
    ctx.log_metrics({k: v for k, v in metrics.items() if k.startswith("test_")})
    ctx.record(comparison=comparison, series_metrics="series_metrics.csv",
               **({"baseline_failures": failures} if failures else {}))
    write_series_metrics(ctx.run_dir / "series_metrics.csv", report)

    out = ctx.artifact_dir
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    spec.save(out)
    save_history(out, {s.series.id: SeriesTail(s.series.timestamps[-window:], s.series.values[-window:])
                       for s in splits})
    plot = plot_forecasts(ctx.run_dir / "forecast.png", report, "LSTM", comparison.get("best_baseline"),
                          config.target)
    ctx.attach(plot)
    return ArtifactResult(kind="forecaster", metrics=metrics, extra={
        "horizon": horizon, "window": window, "freq": panel[0].freq, "columns": panel[0].columns,
        "id_column": config.id_column, "series": len(splits), "levels": list(levels),
        "beats_seasonal_naive": own["mase"] < naive["mase"], "comparison": comparison})
