"""The forecaster network: an LSTM encoder with a multi-step head (see spec.py for the transform around it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from forge_timeseries.spec import ForecasterSpec


class LSTMForecaster(nn.Module):
    """Stacked LSTMs (default 128 then 64 units, dropout 0.2) → dense 32 + ReLU → ``horizon`` outputs."""

    def __init__(self, n_features: int, horizon: int, lstm_units: list[int], dropout: float, dense_units: int):
        super().__init__()
        sizes = [n_features, *lstm_units]
        self.lstms = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in itertools.pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(sizes[-1], dense_units), nn.ReLU(), nn.Linear(dense_units, horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, window, features) → (batch, horizon)
        for lstm in self.lstms:
            x, _ = lstm(x)
            x = self.dropout(x)
        return self.head(x[:, -1, :])


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
