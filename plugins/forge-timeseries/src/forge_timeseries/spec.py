"""What a trained forecaster is, without torch: the window transform and the spec saved as ``forecaster.json``.

Each input window is made level-free: every feature has its last value in the window subtracted and is divided
by a scale fitted on the training part only (the standard deviation of its one-step differences), after an
optional log. The model predicts the next ``horizon`` target values in the same units.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from forge_timeseries.model import LSTMForecaster


@dataclass
class WindowTransform:
    log: bool
    scales: list[float]  # one per feature, target first

    @classmethod
    def fit(cls, train: np.ndarray, log: bool) -> WindowTransform:
        values = np.log(train) if log else train
        diffs = np.diff(values, axis=0)
        scales = [float(s) if s > 1e-12 else 1.0 for s in diffs.std(axis=0)]
        return cls(log=log, scales=scales)

    def _base(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.log else values

    def inputs(self, windows: np.ndarray) -> np.ndarray:
        """(batch, window, features) raw → model inputs."""
        base = self._base(windows)
        return ((base - base[:, -1:, :]) / np.asarray(self.scales)).astype(np.float32)

    def targets(self, windows: np.ndarray, future: np.ndarray) -> np.ndarray:
        """(batch, horizon) raw target values → model targets, relative to each window's last target value."""
        last = self._base(windows)[:, -1, 0:1]
        return ((self._base(future) - last) / self.scales[0]).astype(np.float32)

    def outputs(self, windows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """Model outputs → raw target values."""
        last = self._base(windows)[:, -1, 0:1]
        base = last + predicted * self.scales[0]
        return np.exp(base) if self.log else base


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
    transform: dict

    def build(self) -> LSTMForecaster:
        from forge_timeseries.model import LSTMForecaster

        return LSTMForecaster(self.n_features, self.horizon, self.lstm_units, self.dropout, self.dense_units)

    def window_transform(self) -> WindowTransform:
        return WindowTransform(**self.transform)

    def save(self, directory: Path) -> None:
        (directory / "forecaster.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ForecasterSpec:
        return cls(**json.loads((directory / "forecaster.json").read_text()))
