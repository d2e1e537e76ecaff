"""Recipe ``lstm-forecast``: a multi-step LSTM forecaster for one series (plus optional numeric covariates).

    forge run --recipe lstm-forecast --data passengers.csv --set horizon=12 --set window=24 --set log_transform=true

Chronological split (never shuffled across time): train | validation (``val_size``) | test (``test_size``, both
default to ``horizon``). Scaling is fitted on the training part only. Early stopping on validation loss, the best
weights kept. Test metrics: MAE, RMSE, sMAPE and MASE, with the seasonal-naive forecast's alongside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from forge.artifacts import ArtifactResult
from forge.config import DataFile, RecipeConfig
from forge.errors import DataError
from forge.run.context import RunContext
from pydantic import Field


class ForecastConfig(RecipeConfig):
    data: DataFile = Field(description="CSV/TSV/Parquet with a time column and a target column")
    time_column: str = "date"
    target: str = "value"
    covariates: list[str] = Field([], description="extra numeric input columns (past values only)")
    horizon: int = Field(12, ge=1, description="steps forecast at once")
    window: int = Field(24, ge=2, description="past steps the model sees")
    season_length: int | None = Field(None, ge=1, description="for seasonal naive / MASE (default: from freq)")
    val_size: int | None = Field(None, ge=1, description="validation steps (default: horizon)")
    test_size: int | None = Field(None, ge=1, description="test steps (default: horizon)")
    fill: Literal["error", "interpolate", "ffill"] = Field("error", description="what to do with missing steps")
    log_transform: bool = Field(False, description="model log(values): multiplicative seasonality")
    lstm_units: list[int] = Field([128, 64], min_length=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    dense_units: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(300, ge=1)
    patience: int = Field(30, ge=1, description="early stopping: epochs without validation improvement")
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints")


def windows_at(values: np.ndarray, origins: list[int], window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.stack([values[t - window:t] for t in origins])
    future = np.stack([values[t:t + horizon, 0] for t in origins])
    return inputs, future


def seasonal_naive(values: np.ndarray, origin: int, horizon: int, season: int) -> np.ndarray:
    """Repeat the last full season before ``origin``."""
    return np.array([values[origin - season + (h % season), 0] for h in range(horizon)])


def scores(actual: np.ndarray, predicted: np.ndarray, scale: float) -> dict[str, float]:
    error = predicted - actual
    denominator = np.abs(actual) + np.abs(predicted)
    smape = float(np.mean(np.where(denominator > 0, 2 * np.abs(error) / np.where(denominator > 0, denominator, 1), 0)))
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "smape": 100 * smape, "mase": float(np.mean(np.abs(error)) / scale)}


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


def train(ctx: RunContext, config: ForecastConfig) -> ArtifactResult:
    import torch
    from safetensors.torch import save_file

    from forge_timeseries.series import read_series, season_length
    from forge_timeseries.spec import ForecasterSpec, WindowTransform

    series = read_series(config.data, config.time_column, config.target, config.covariates, config.fill)
    values, n = series.values, len(series.values)
    horizon, window = config.horizon, config.window
    val_size, test_size = config.val_size or horizon, config.test_size or horizon
    test_start, val_start = n - test_size, n - test_size - val_size
    needed = window + horizon + val_size + test_size
    if n < needed:
        raise DataError(f"{config.data}: {n} points is shorter than window + horizon + validation + test "
                        f"({window} + {horizon} + {val_size} + {test_size} = {needed})")
    if config.log_transform and (values <= 0).any():
        raise DataError(f"{config.data}: log_transform needs positive values; column '{config.target}' has some ≤ 0")
    season = config.season_length or season_length(series.freq)
    train_origins = list(range(window, val_start - horizon + 1))
    val_origins = [t for t in range(max(window, val_start - horizon + 1), test_start - horizon + 1)]
    test_origins = list(range(test_start, n - horizon + 1))
    if not val_origins:
        val_origins = [test_start - horizon] if test_start - horizon >= window else [train_origins[-1]]
    ctx.log(f"series: {n} points, freq {series.freq}, season {season}; filled {series.filled}; "
            f"train windows {len(train_origins)}, validation {len(val_origins)}, test origins {len(test_origins)}")
    transform = WindowTransform.fit(values[:val_start], config.log_transform)
    spec = ForecasterSpec(n_features=values.shape[1], horizon=horizon, window=window, lstm_units=config.lstm_units,
                          dropout=config.dropout, dense_units=config.dense_units, columns=series.columns,
                          time_column=config.time_column, freq=series.freq, season_length=season,
                          transform={"log": transform.log, "scales": transform.scales})
    ctx.record(dataset={"points": n, "freq": series.freq, "season_length": season, "filled": series.filled,
                        "train_end": str(series.timestamps[val_start - 1]),
                        "test_start": str(series.timestamps[test_start])})

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = spec.build()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    train_x, train_y = windows_at(values, train_origins, window, horizon)
    val_x, val_y = windows_at(values, val_origins, window, horizon)
    tx = torch.from_numpy(transform.inputs(train_x))
    ty = torch.from_numpy(transform.targets(train_x, train_y))
    vx = torch.from_numpy(transform.inputs(val_x))
    vy = torch.from_numpy(transform.targets(val_x, val_y))
    best = {k: v.clone() for k, v in model.state_dict().items()}
    progress: dict[str, Any] = {"epoch": 0, "best_val": float("inf"), "bad_epochs": 0}
    if ctx.resume_from is not None:
        best, progress = _load_state(ctx.resume_from, model, optimizer, generator)
        ctx.log(f"resumed after epoch {progress['epoch']}")
    loss_fn = torch.nn.MSELoss()
    bar = ctx.progress(total=config.max_epochs, desc="epochs")
    bar.update(progress["epoch"])
    for epoch in range(progress["epoch"] + 1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(len(tx), generator=generator)
        total = 0.0
        for start in range(0, len(tx), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(tx[batch]), ty[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(model(vx), vy))
        improved = val_loss < progress["best_val"] - 1e-9
        if improved:
            best = {k: v.clone() for k, v in model.state_dict().items()}
        progress.update(epoch=epoch, best_val=min(val_loss, progress["best_val"]),
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

    from forge_timeseries.model import predict

    test_x, test_y = windows_at(values, test_origins, window, horizon)
    forecast = predict(spec, model, test_x)
    naive = np.stack([seasonal_naive(values, t, horizon, season) for t in test_origins])
    train_part = values[:val_start, 0]
    scale = float(np.mean(np.abs(train_part[season:] - train_part[:-season]))) or 1.0
    model_scores = scores(test_y, forecast, scale)
    naive_scores = scores(test_y, naive, scale)
    metrics = {f"test_{k}": v for k, v in model_scores.items()}
    metrics.update({f"seasonal_naive_{k}": v for k, v in naive_scores.items()})
    metrics["best_val_loss"] = progress["best_val"]
    metrics["epochs"] = progress["epoch"]
    ctx.log(f"test: MASE {model_scores['mase']:.3f} vs seasonal naive {naive_scores['mase']:.3f}; "
            f"sMAPE {model_scores['smape']:.2f}% vs {naive_scores['smape']:.2f}%")

    out = ctx.artifact_dir
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    spec.save(out)
    tail = {"timestamps": [str(t) for t in series.timestamps[-window:]], "values": values[-window:].tolist()}
    (out / "history.json").write_text(json.dumps(tail))
    plot = plot_forecast(ctx.run_dir / "forecast.png", series.timestamps, values[:, 0], test_origins, forecast,
                         naive, config.target)
    ctx.attach(plot)
    return ArtifactResult(kind="forecaster", metrics=metrics, extra={
        "horizon": horizon, "window": window, "freq": series.freq, "columns": series.columns,
        "beats_seasonal_naive": model_scores["mase"] < naive_scores["mase"]})


def plot_forecast(path: Path, stamps: Any, target: np.ndarray, origins: list[int], forecast: np.ndarray,
                  naive: np.ndarray, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = forecast.shape[1]
    first = origins[0]
    show_from = max(0, first - 6 * horizon)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(stamps[show_from:first], target[show_from:first], color="black", label="history")
    ax.plot(stamps[first:], target[first:], color="black", linestyle=":", label="actual (test)")
    ax.plot(stamps[first:first + horizon], forecast[0], color="tab:blue", label="LSTM forecast")
    ax.plot(stamps[first:first + horizon], naive[0], color="tab:orange", linestyle="--", label="seasonal naive")
    ax.set_title(f"{name}: forecast from {str(stamps[first])[:10]}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
