"""The test report both forecasting recipes write: metrics per series and model, their aggregate over series, the
comparison with the statistical baselines (and whether one of them wins), ``series_metrics.csv`` and
``forecast.png``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forge_timeseries.metrics import POINT_METRICS, aggregate, interval_scores, model_key, scores
from forge_timeseries.split import SeriesSplit


@dataclass
class ModelForecast:
    """One model's forecasts for one series at its test origins: (origins, horizon) arrays."""

    mean: np.ndarray
    lower: dict[float, np.ndarray] = field(default_factory=dict)
    upper: dict[float, np.ndarray] = field(default_factory=dict)


@dataclass
class TestReport:
    models: list[str]  # the recipe's own model first, then the baselines
    per_series: list[dict[str, Any]]  # {"id", "model", metric: value}
    aggregated: dict[str, dict[str, float]]  # model → metric → mean over series
    splits: list[SeriesSplit]
    forecasts: list[dict[str, ModelForecast]]
    horizon: int

    def scaled_errors(self, model: str) -> list[np.ndarray]:
        """Per series: |error| / MASE scale of every test forecast value (for paired comparisons)."""
        return [np.abs(f[model].mean - s.test_actuals(self.horizon)) / s.scale
                for s, f in zip(self.splits, self.forecasts, strict=True)]


def build_report(splits: Sequence[SeriesSplit], forecasts: Sequence[dict[str, ModelForecast]], models: Sequence[str],
                 horizon: int) -> TestReport:
    rows: list[dict[str, Any]] = []
    for split, by_model in zip(splits, forecasts, strict=True):
        actual = split.test_actuals(horizon)
        for name in models:
            fc = by_model[name]
            metrics: dict[str, float] = scores(actual, fc.mean, split.scale)
            if fc.lower:
                metrics.update(interval_scores(actual, fc.lower, fc.upper, split.scale))
            rows.append({"id": split.key, "model": name, **metrics})
    aggregated = {name: aggregate([{k: float(v) for k, v in r.items() if k not in ("id", "model")}
                                   for r in rows if r["model"] == name]) for name in models}
    return TestReport(list(models), rows, aggregated, list(splits), list(forecasts), horizon)


def flat_metrics(report: TestReport, own: str, own_prefix: str = "test") -> dict[str, float]:
    """``test_mase`` for the recipe's own model, ``auto_ets_mase``... for the others."""
    out = {}
    for name, metrics in report.aggregated.items():
        prefix = own_prefix if name == own else model_key(name)
        out.update({f"{prefix}_{k}": v for k, v in metrics.items()})
    return out


def compare(report: TestReport, own: str, seed: int = 0) -> dict[str, Any]:
    """Does a baseline beat ``own`` on MASE, and by more than the 95% interval of the difference? The interval
    is a paired bootstrap: over series for a panel, over the test values for one series."""
    from forge.evaluation import mean_interval

    mase = {name: report.aggregated[name]["mase"] for name in report.models}
    baselines = [m for m in report.models if m != own]
    result: dict[str, Any] = {"model": own, "mase": mase, "baseline_wins": False}
    if not baselines:
        return result
    best = min(baselines, key=lambda m: mase[m])
    own_errors, best_errors = report.scaled_errors(own), report.scaled_errors(best)
    if len(report.splits) > 1:
        differences = [float(a.mean() - b.mean()) for a, b in zip(own_errors, best_errors, strict=True)]
        per_series = {r["id"]: r for r in report.per_series if r["model"] == own}
        won = sum(1 for r in report.per_series if r["model"] == best and r["mase"] < per_series[r["id"]]["mase"])
        result["series_won_by_best_baseline"] = won
    else:
        differences = (own_errors[0] - best_errors[0]).ravel().tolist()
    low, high = mean_interval(differences, seed=seed)
    result.update(best_baseline=best, baseline_wins=mase[best] < mase[own], mase_difference=mase[own] - mase[best],
                  difference_interval=[low, high], worse_beyond_interval=bool(low > 0))
    return result


def comparison_line(comparison: dict[str, Any], alarm: str = "BASELINE WINS: ") -> str:
    """``test MASE: LSTM 1.162 · AutoETS 0.731 ...; AutoETS beats LSTM by 0.431 (95% interval 0.2 to 0.6)``."""
    ranked = sorted(comparison["mase"].items(), key=lambda kv: kv[1])
    line = "test MASE: " + " · ".join(f"{name} {value:.3f}" for name, value in ranked)
    own = comparison["model"]
    if comparison.get("baseline_wins"):
        low, high = comparison["difference_interval"]
        beyond = "beyond" if comparison["worse_beyond_interval"] else "within"
        line += (f". {alarm}{comparison['best_baseline']} beats {own} by "
                 f"{comparison['mase_difference']:.3f} MASE (95% interval of the difference {low:.3f} to "
                 f"{high:.3f}: {beyond} noise)")
        if "series_won_by_best_baseline" in comparison:
            line += f"; it is better on {comparison['series_won_by_best_baseline']} series"
    elif "best_baseline" in comparison:
        line += f". {own} beats every baseline (best: {comparison['best_baseline']})"
    return line


def write_series_metrics(path: Path, report: TestReport) -> Path:
    """One row per series and model: id, model, mae, rmse, smape, mase, coverage_*, msis."""
    keys = list(POINT_METRICS) + sorted({k for r in report.per_series for k in r} - {"id", "model", *POINT_METRICS})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model", *keys])
        for row in report.per_series:
            writer.writerow([row["id"], row["model"], *[f"{row[k]:.6g}" if k in row else "" for k in keys]])
    return path


def plot_forecasts(path: Path, report: TestReport, own: str, best_baseline: str | None, target: str) -> Path:
    """History, the test actuals, ``own``'s first test forecast with its intervals, seasonal naive and the best
    baseline; for a panel, up to four series (the best, median and worst by ``own``'s MASE, and the first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(report.splits)),
                   key=lambda i: next(r["mase"] for r in report.per_series
                                      if r["model"] == own and r["id"] == report.splits[i].key))
    chosen = list(dict.fromkeys([0, order[0], order[len(order) // 2], order[-1]]))[:4] if len(order) > 1 else [0]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(9, 3.6 * len(chosen)), squeeze=False)
    for ax, index in zip(axes[:, 0], chosen, strict=True):
        split, by_model = report.splits[index], report.forecasts[index]
        stamps, values = split.series.timestamps, split.series.values[:, 0]
        first = split.test_origins[0]
        horizon = report.horizon
        shown = slice(max(0, first - 6 * horizon), first)
        ax.plot(stamps[shown], values[shown], color="black", label="history")
        ax.plot(stamps[first - 1:], values[first - 1:], color="black", linestyle=":", label="actual (test)")
        future = stamps[first:first + horizon]
        fc = by_model[own]
        for level, alpha in sorted(((lv, 0.15 if lv >= 90 else 0.3) for lv in fc.lower), reverse=True):
            ax.fill_between(future, fc.lower[level][0], fc.upper[level][0], color="tab:blue", alpha=alpha,
                            linewidth=0, label=f"{level:g}% interval")
        ax.plot(future, fc.mean[0], color="tab:blue", label=f"{own} forecast")
        if "SeasonalNaive" in by_model and own != "SeasonalNaive":
            ax.plot(future, by_model["SeasonalNaive"].mean[0], color="tab:orange", linestyle="--",
                    label="seasonal naive")
        if best_baseline and best_baseline not in (own, "SeasonalNaive"):
            ax.plot(future, by_model[best_baseline].mean[0], color="tab:green", linestyle="-.", label=best_baseline)
        mase = {r["model"]: r["mase"] for r in report.per_series if r["id"] == split.key}
        scores_text = " · ".join(f"{m} {mase[m]:.2f}" for m in dict.fromkeys([own, best_baseline or own]))
        series = f" [{split.series.id}]" if split.series.id is not None else ""
        ax.set_title(f"{target}{series}: forecast from {str(stamps[first])[:10]} · MASE {scores_text}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
