"""The forecaster network: an LSTM encoder with a multi-step head (see spec.py for the transform around it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from forge_timeseries.spec import ForecasterSpec, WindowTransform


class LSTMForecaster(nn.Module):
    """Stacked LSTMs (default 128 then 64 units, dropout 0.2) → dense 32 + ReLU → ``horizon`` outputs."""

    def __init__(self, n_features: int, horizon: int, lstm_units: list[int], dropout: float, dense_units: int):
        super().__init__()
        sizes = [n_features, *lstm_units]
        self.lstms = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in itertools.pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(sizes[-1], dense_units), nn.ReLU(), nn.Linear(dense_units, horizon))

    @classmethod
    def from_spec(cls, spec: ForecasterSpec) -> LSTMForecaster:
        return cls(spec.n_features, spec.horizon, spec.lstm_units, spec.dropout, spec.dense_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, window, features) → (batch, horizon)
        for lstm in self.lstms:
            x, _ = lstm(x)
            x = self.dropout(x)
        return self.head(x[:, -1, :])


def load_forecaster(directory: Path) -> tuple[ForecasterSpec, LSTMForecaster]:
    from safetensors.torch import load_file

    spec = ForecasterSpec.load(directory)
    model = LSTMForecaster.from_spec(spec)
    model.load_state_dict(load_file(directory / "model.safetensors"))
    model.eval()
    return spec, model


def predict(spec: ForecasterSpec, model: nn.Module, windows: np.ndarray,
            transform: WindowTransform | None = None) -> np.ndarray:
    """(batch, window, features) raw history → (batch, horizon) raw forecasts (``transform``: per-series scaling;
    default the single series')."""
    transform = transform or spec.window_transform()
    with torch.inference_mode():
        predicted = model(torch.from_numpy(transform.inputs(windows))).numpy()
    return transform.outputs(windows, predicted)


def sample_windows(spec: ForecasterSpec, directory: Path, count: int = 8) -> tuple[np.ndarray, WindowTransform]:
    """Realistic raw windows for tracing and parity checks (the stored tails of up to ``count`` series, then
    perturbed copies) and the per-series transform that goes with them."""
    from forge_timeseries.forecasters import load_history

    tails = load_history(directory)
    ids = list(tails)[:count]
    rng = np.random.default_rng(0)
    windows, owners = [], []
    for i in range(count):
        key = ids[i % len(ids)]
        base = tails[key].values[-spec.window:]
        windows.append(base if i < len(ids) else base * (1 + 0.05 * rng.standard_normal(base.shape)))
        owners.append(key)
    stacked = np.stack(windows)
    if spec.transform.get("log"):
        stacked = np.abs(stacked) + 1e-6
    return stacked, spec.window_transform(owners if spec.series_scales else None)
