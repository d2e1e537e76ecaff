"""Trained forecasting runs shared by the tests of this folder (each trained once per session, through the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from series_files import write_panel, write_series

LSTM_FAST = ["--set", "max_epochs=5", "--set", "lstm_units=[16]", "--set", "dense_units=8", "--set", "window=12",
             "--set", "horizon=6", "--no-tracking"]
PANEL_LSTM = ["--set", "id_column=store", "--set", "max_epochs=10", "--set", "lstm_units=[16]", "--set",
              "dense_units=8", "--set", "window=12", "--set", "horizon=6", "--set", "batch_size=64", "--no-tracking"]
PANEL_STAT = ["--set", "id_column=store", "--set", "horizon=6", "--no-tracking"]


def run_forge(cwd: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
    result = subprocess.run([sys.executable, "-m", "forge", *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def forecast_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lstm`` (one series), ``stat`` (one series), ``panel-lstm`` and ``panel-stat`` (24 series), and the
    files they were trained on (``s.csv``, ``panel.csv``)."""
    work = tmp_path_factory.mktemp("forecast-runs")
    write_series(work / "s.csv")
    write_panel(work / "panel.csv")
    run_forge(work, "run", "--recipe", "lstm-forecast", "--data", "s.csv", *LSTM_FAST, "-o", "lstm")
    run_forge(work, "run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "horizon=6", "--no-tracking",
              "-o", "stat")
    run_forge(work, "run", "--recipe", "lstm-forecast", "--data", "panel.csv", *PANEL_LSTM, "-o", "panel-lstm")
    run_forge(work, "run", "--recipe", "stat-forecast", "--data", "panel.csv", *PANEL_STAT, "-o", "panel-stat")
    return work
