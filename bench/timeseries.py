"""lstm-forecast on real monthly series: epoch time, forecast latency, and MASE against seasonal naive.

    python bench/timeseries.py

Series from ../shared/data: airline passengers (1949-1960), Mauna Loa CO2 (1959-1997), monthly sunspots
(1749-1983). Horizon 12, window 24 (sunspots 48); the last 12 months are the test split.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import forge, run_metrics, shared

SERIES = {
    "ts_airpassengers.csv": ["--set", "log_transform=true", "--set", "learning_rate=0.003", "--set", "seed=7"],
    "ts_co2_maunaloa.csv": [],
    "ts_sunspots_monthly.csv": ["--set", "window=48"],
}


def main() -> None:
    from forge_timeseries.model import load_forecaster, predict

    print(f"{'series':<26}{'points':>7}{'epochs':>7}{'s/epoch':>9}{'forecast ms':>12}{'MASE':>7}{'naive':>7}"
          f"{'sMAPE %':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, extra in SERIES.items():
            data = shared(name)
            run = work / name
            started = time.perf_counter()
            forge("run", "--recipe", "lstm-forecast", "--data", data, "--set", "horizon=12", "--set", "max_epochs=150",
                  "--set", "patience=20", *extra, "--no-tracking", "-o", run, cwd=work)
            metrics = run_metrics(run)
            rows = [r for r in (run / "metrics.jsonl").read_text().splitlines()]
            first, last = rows[0], rows[-1]
            seconds = json.loads(last)["time"] - json.loads(first)["time"]
            per_epoch = seconds / max(1, metrics["epochs"] - 1)
            spec, model = load_forecaster(run / "artifact")
            window = np.asarray(json.loads((run / "artifact" / "history.json").read_text())["values"])[None]
            latency = statistics.median(_time(lambda s=spec, m=model, w=window: predict(s, m, w))
                                        for _ in range(50)) * 1000
            points = len(data.read_text().splitlines()) - 1
            print(f"{name.removesuffix('.csv'):<26}{points:>7}{metrics['epochs']:>7.0f}{per_epoch:>9.3f}"
                  f"{latency:>12.2f}{metrics['test_mase']:>7.3f}{metrics['seasonal_naive_mase']:>7.3f}"
                  f"{metrics['test_smape']:>9.2f}   ({time.perf_counter() - started:.0f} s in all)")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
