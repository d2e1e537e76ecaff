"""The forecaster: an LSTM encoder with a multi-step head, and the window transform around it.

Each input window is made level-free: every feature has its last value in the window subtracted and is divided
by a scale fitted on the training part only (the standard deviation of its one-step differences), after an
optional log. The head predicts the next ``horizon`` target values in the same units.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


class LSTMForecaster(nn.Module):
    """Stacked LSTMs (default 128 then 64 units, dropout 0.2) → dense 32 + ReLU → ``horizon`` outputs."""

    def __init__(self, n_features: int, horizon: int, lstm_units: list[int], dropout: float, dense_units: int):
        super().__init__()
        sizes = [n_features, *lstm_units]
        self.lstms = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:], strict=False))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(sizes[-1], dense_units), nn.ReLU(), nn.Linear(dense_units, horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, window, features) → (batch, horizon)
        for lstm in self.lstms:
            x, _ = lstm(x)
            x = self.dropout(x)
        return self.head(x[:, -1, :])


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
        return LSTMForecaster(self.n_features, self.horizon, self.lstm_units, self.dropout, self.dense_units)

    def window_transform(self) -> WindowTransform:
        return WindowTransform(**self.transform)

    def save(self, directory: Path) -> None:
        (directory / "forecaster.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ForecasterSpec:
        return cls(**json.loads((directory / "forecaster.json").read_text()))


def load_forecaster(directory: Path) -> tuple[ForecasterSpec, LSTMForecaster]:
    from safetensors.torch import load_file

    spec = ForecasterSpec.load(directory)
    model = spec.build()
    model.load_state_dict(load_file(directory / "model.safetensors"))
    model.eval()
    return spec, model


def predict(spec: ForecasterSpec, model: nn.Module, windows: np.ndarray) -> np.ndarray:
    """(batch, window, features) raw history → (batch, horizon) raw forecasts."""
    inputs = torch.from_numpy(spec.window_transform().inputs(windows))
    with torch.inference_mode():
        predicted = model(inputs).numpy()
    return spec.window_transform().outputs(windows, predicted)
