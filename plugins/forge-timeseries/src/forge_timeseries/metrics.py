"""Forecast accuracy: MAE, RMSE, sMAPE (%), MASE; interval coverage and MSIS. Shared by both recipes and the
``backtest`` evaluator so their numbers mean the same thing.

MASE divides the mean absolute error by the in-sample mean absolute error of the seasonal-naive forecast on the
data the forecast could see (the training part of the series): below 1 beats seasonal naive "on average", the
M4 competition's convention. Over many series the aggregate of a metric is its mean over series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

POINT_METRICS = ("mae", "rmse", "smape", "mase")


def mase_scale(train: np.ndarray, season: int) -> float:
    """Mean absolute seasonal difference of ``train`` (the seasonal-naive in-sample error); 1.0 when it is 0."""
    season = season if len(train) > season else 1
    if len(train) <= season:
        return 1.0
    return float(np.mean(np.abs(train[season:] - train[:-season]))) or 1.0


def seasonal_naive(target: np.ndarray, origin: int, horizon: int, season: int) -> np.ndarray:
    """Repeat the last full season before ``origin``."""
    season = min(season, origin)
    return np.array([target[origin - season + (h % season)] for h in range(horizon)])


def scores(actual: np.ndarray, predicted: np.ndarray, scale: float) -> dict[str, float]:
    """Point metrics over all values of ``actual``/``predicted`` (any shape)."""
    error = predicted - actual
    denominator = np.abs(actual) + np.abs(predicted)
    smape = float(np.mean(np.where(denominator > 0, 2 * np.abs(error) / np.where(denominator > 0, denominator, 1), 0)))
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "smape": 100 * smape, "mase": float(np.mean(np.abs(error)) / scale)}


def interval_scores(actual: np.ndarray, lower: Mapping[float, np.ndarray], upper: Mapping[float, np.ndarray],
                    scale: float) -> dict[str, float]:
    """``coverage_L`` (share of actuals inside the L% interval) per level, and ``msis`` (the M4 mean scaled
    interval score) for the 95% interval when there is one."""
    result: dict[str, float] = {}
    for level in sorted(lower):
        inside = (actual >= lower[level]) & (actual <= upper[level])
        result[f"coverage_{level_name(level)}"] = float(np.mean(inside))
    if 95 in lower:
        lo, hi, alpha = lower[95], upper[95], 0.05
        penalty = (hi - lo) + 2 / alpha * (lo - actual) * (actual < lo) + 2 / alpha * (actual - hi) * (actual > hi)
        result["msis"] = float(np.mean(penalty) / scale)
    return result


def level_name(level: float) -> str:
    """80.0 → "80", 97.5 → "97.5": how a level appears in metric names and API fields."""
    return f"{level:g}"


def model_key(name: str) -> str:
    """The metric prefix of a model: ``AutoETS`` → ``auto_ets``, ``SeasonalNaive`` → ``seasonal_naive``."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def aggregate(per_series: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean over series of each metric (one series: its own metrics)."""
    keys = sorted({k for row in per_series for k in row})
    return {k: float(np.mean([row[k] for row in per_series if k in row])) for k in keys}
