"""What a trained LSTM forecaster is, without torch: the window transform, the interval calibration and the spec saved
as ``forecaster.json``.

Each input window is made level-free: every feature has its last value in the window subtracted and is divided by
a scale fitted on the training part of its own series (the standard deviation of its one-step differences), after
an optional log. The model predicts the next ``horizon`` target values in the same units, so one global model can
serve many series of different levels and sizes. Prediction intervals are widths in those units (see
:class:`IntervalCalibration`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class WindowTransform:
    """``scales``: (features,) for windows of one series, or (batch, features), one row per window."""

    log: bool
    scales: Any  # list[float] | np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray, log: bool) -> WindowTransform:
        """Scales from the training part of one series: (n, features)."""
        values = np.log(train) if log else train
        diffs = np.diff(values, axis=0)
        scales = [float(s) if s > 1e-12 else 1.0 for s in diffs.std(axis=0)]
        return cls(log=log, scales=scales)

    @classmethod
    def of_windows(cls, windows: np.ndarray, log: bool) -> WindowTransform:
        """Scales from each window itself: for a series the model has not seen (no stored scale)."""
        values = np.log(windows) if log else windows
        scales = np.diff(values, axis=1).std(axis=1)
        return cls(log=log, scales=np.where(scales > 1e-12, scales, 1.0))

    def _base(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.log else values

    def _feature_scales(self) -> np.ndarray:  # broadcasts against (batch, window, features)
        scales = np.asarray(self.scales, dtype=np.float64)
        return scales[:, None, :] if scales.ndim == 2 else scales

    def _target_scale(self) -> np.ndarray:  # broadcasts against (batch, horizon)
        scales = np.asarray(self.scales, dtype=np.float64)
        return scales[:, 0:1] if scales.ndim == 2 else scales[0:1]

    def inputs(self, windows: np.ndarray) -> np.ndarray:
        """(batch, window, features) raw → model inputs."""
        base = self._base(windows)
        return ((base - base[:, -1:, :]) / self._feature_scales()).astype(np.float32)

    def targets(self, windows: np.ndarray, future: np.ndarray) -> np.ndarray:
        """(batch, horizon) raw target values → model targets, relative to each window's last target value."""
        last = self._base(windows)[:, -1, 0:1]
        return ((self._base(future) - last) / self._target_scale()).astype(np.float32)

    def outputs(self, windows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """Model outputs (or output ± interval widths) → raw target values."""
        last = self._base(windows)[:, -1, 0:1]
        base = last + predicted * self._target_scale()
        return np.exp(base) if self.log else base


def conformal_quantile(scores: Sequence[float], level: float) -> float:
    """The split-conformal quantile of nonconformity ``scores`` for ``level`` percent coverage: the
    ⌈(n+1)·level⌉-th smallest score (the largest one when there are too few scores for the level)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if not len(ordered):
        return float("inf")
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * level / 100))
    return float(ordered[max(rank, 1) - 1])


def nondecreasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators): errors do not shrink with the step."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([value, max(weight, 1e-12), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, c2), (m1, w1, c1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(int(c), m) for m, _, c in blocks])


@dataclass
class IntervalCalibration:
    """Normalised split-conformal prediction intervals, in the model's scaled units.

    Calibration errors ``r`` are the forecast errors on the validation part (scaled units, out of sample: targets
    the model never trained on). Per step ``h`` the typical error ``s_h`` is their mean absolute value, made
    non-decreasing in ``h``; the nonconformity score of an error is ``|r| / s_h``, pooled over steps and series. The
    interval at level L for step h is the forecast ± ``q_L · s_h`` with ``q_L`` the conformal quantile of the scores.
    """

    step_scale: list[float]
    scores: list[float]  # sorted

    @classmethod
    def fit(cls, errors: np.ndarray, mask: np.ndarray, max_scores: int = 2000) -> IntervalCalibration:
        """``errors``: (windows, horizon) scaled errors; ``mask``: which of them are out of sample."""
        counts = mask.sum(axis=0).astype(np.float64)
        absolute = np.abs(np.where(mask, errors, 0.0))
        typical = np.divide(absolute.sum(axis=0), counts, out=np.full(len(counts), np.nan), where=counts > 0)
        seen = np.isfinite(typical)
        if not seen.any():
            return cls(step_scale=[1.0] * errors.shape[1], scores=[])
        # steps without any out-of-sample error borrow from the nearest step that has some
        typical = np.interp(np.arange(len(typical)), np.flatnonzero(seen), typical[seen])
        step_scale = nondecreasing(typical, np.maximum(counts, 1e-3))
        step_scale = np.where(step_scale > 1e-9, step_scale, 1e-9)
        scores = np.sort((absolute / step_scale)[mask])
        if len(scores) > max_scores:  # keep the artifact small: evenly spaced order statistics
            scores = scores[np.linspace(0, len(scores) - 1, max_scores).round().astype(int)]
        return cls(step_scale=step_scale.tolist(), scores=scores.tolist())

    def widths(self, level: float, steps: int) -> np.ndarray:
        """Half-widths (scaled units) of the ``level`` percent interval for the first ``steps`` steps."""
        return conformal_quantile(self.scores, level) * np.asarray(self.step_scale[:steps])


@dataclass
class ForecasterSpec:
    """Everything needed to rebuild and use a trained forecaster (saved as forecaster.json; no pickle)."""

    n_features: int
    horizon: int
    window: int
    lstm_units: list[int]
    dropout: float
    dense_units: int
    columns: list[str]
    time_column: str
    freq: str
    season_length: int
    transform: dict  # {"log": bool, "scales": [...]}: one series' scales (a panel: the median over its series)
    id_column: str | None = None
    series_scales: dict[str, list[float]] = field(default_factory=dict)  # per series id, for a panel
    intervals: dict = field(default_factory=dict)  # IntervalCalibration fields; empty: no intervals
    levels: list[float] = field(default_factory=lambda: [80.0, 95.0])  # the default interval levels
    trained_until: dict[str, str] = field(default_factory=dict)  # series id ("" for one series) → last training step

    def window_transform(self, ids: Sequence[str | None] | None = None) -> WindowTransform:
        """The transform for windows of the given series (one id per window), or of the single series."""
        log = bool(self.transform["log"])
        if ids is None:
            return WindowTransform(log=log, scales=list(self.transform["scales"]))
        return WindowTransform(log=log, scales=np.asarray([self.scales_of(i) for i in ids], dtype=np.float64))

    def scales_of(self, series_id: str | None) -> list[float]:
        if series_id is None or not self.series_scales:
            return list(self.transform["scales"])
        return self.series_scales[series_id]

    def knows(self, series_id: str | None) -> bool:
        return series_id is None if not self.series_scales else series_id in self.series_scales

    def calibration(self) -> IntervalCalibration | None:
        return IntervalCalibration(**self.intervals) if self.intervals else None

    def save(self, directory: Path) -> None:
        (directory / "forecaster.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ForecasterSpec:
        return cls(**json.loads((directory / "forecaster.json").read_text()))
