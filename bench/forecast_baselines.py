"""Forecasting against the classics: MASE of lstm-forecast and of every statsforecast model, interval coverage and
wall time, on the classic series and on a generated panel of many series.

    python bench/forecast_baselines.py classic          # airline, CO2, sunspots from ../shared/data
    python bench/forecast_baselines.py panel-stat --series 1000
    python bench/forecast_baselines.py panel-stat --series 1000 --models AutoETS,AutoTheta,SeasonalNaive
    python bench/forecast_baselines.py panel-lstm --series 1000

classic: each series with horizon 12 (the last 12 months are the test split, the 12 before validation); the
baselines are the ones lstm-forecast fits itself on the same training part; "LSTM − best" is the MASE difference to
the best baseline with its 95% paired-bootstrap interval over the test values. stat-forecast's own run gives its
wall time and the model it picks on validation. panel: one global LSTM and stat-forecast over a generated monthly
panel (levels, trends, additive or multiplicative seasons, AR(1) noise, 72-108 points per series), 2 worker
processes for the statistical models.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
from pathlib import Path

from common import forge, shared

MODELS = ["SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta"]
KEYS = {"SeasonalNaive": "seasonal_naive", "AutoETS": "auto_ets", "AutoARIMA": "auto_arima", "AutoTheta": "auto_theta"}
CLASSIC = {
    "ts_airpassengers.csv": ["--set", "log_transform=true", "--set", "learning_rate=0.003", "--set", "seed=7"],
    "ts_co2_maunaloa.csv": [],
    "ts_sunspots_monthly.csv": ["--set", "window=48"],
}
LSTM = ["--set", "horizon=12", "--set", "max_epochs=150", "--set", "patience=20"]


def manifest(run: Path) -> dict:
    return json.loads((run / "forge.json").read_text())


def classic() -> None:
    print(f"{'series':<22}{'LSTM':>7}" + "".join(f"{m:>14}" for m in MODELS)
          + f"{'LSTM - best (95% CI)':>28}{'cov80/95':>11}{'stat pick':>12}{'LSTM s':>8}{'stat s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, extra in CLASSIC.items():
            data = shared(name)
            lstm = forge("run", "--recipe", "lstm-forecast", "--data", data, *LSTM, *extra, "--no-tracking", "-o",
                         work / f"lstm-{name}", cwd=work)["wall"]
            stat = forge("run", "--recipe", "stat-forecast", "--data", data, "--set", "horizon=12", "--no-tracking",
                         "-o", work / f"stat-{name}", cwd=work)["wall"]
            m = manifest(work / f"lstm-{name}")
            s = manifest(work / f"stat-{name}")
            metrics, comparison = m["metrics"], m["comparison"]
            low, high = comparison["difference_interval"]
            diff = f"{comparison['mase_difference']:+.3f} ({low:+.2f}, {high:+.2f})"
            print(f"{name.removeprefix('ts_').removesuffix('.csv'):<22}{metrics['test_mase']:>7.3f}"
                  + "".join(f"{metrics[KEYS[x] + '_mase']:>14.3f}" for x in MODELS)
                  + f"{diff:>28}{metrics['test_coverage_80']:>6.2f}/{metrics['test_coverage_95']:.2f}"
                  + f"{s['primary_model']:>12}{lstm:>8.0f}{stat:>8.0f}", flush=True)


def write_panel(path: Path, series: int, seed: int = 0) -> int:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = 0
    with path.open("w") as handle:
        handle.write("id,date,value\n")
        for s in range(series):
            length = int(rng.integers(72, 109))
            start = pd.Timestamp("2010-01-01") + pd.DateOffset(months=int(rng.integers(0, 24)))
            level = math.exp(rng.uniform(math.log(10), math.log(5000)))
            trend = rng.normal(0.003, 0.004)
            amplitude, phi, noise = rng.uniform(0.0, 0.35), rng.uniform(0.0, 0.8), rng.uniform(0.02, 0.12)
            multiplicative = rng.random() < 0.5
            phase = rng.uniform(0, 2 * math.pi)
            error = 0.0
            for i, stamp in enumerate(pd.date_range(start, periods=length, freq="MS")):
                error = phi * error + rng.normal(0, noise)
                season = amplitude * math.sin(2 * math.pi * i / 12 + phase)
                base = level * (1 + trend) ** i
                value = base * (1 + season) * (1 + error) if multiplicative else base * (1 + season + error)
                handle.write(f"S{s:04d},{stamp.date()},{max(value, 0.01):.4f}\n")
                rows += 1
    return rows


def panel(part: str, series: int, epochs: int, models: str = "") -> None:
    """``panel-stat``: stat-forecast with its default models; ``panel-lstm``: one global LSTM (its report fits the
    default baselines per series too). Separate commands so each stays a few minutes on 2 cores."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "panel.csv"
        rows = write_panel(data, series)
        print(f"panel: {series} series, {rows} rows", flush=True)
        if part == "panel-stat":
            chosen = ["--set", f"models=[{models}]"] if models else []
            wall = forge("run", "--recipe", "stat-forecast", "--data", data, "--set", "id_column=id", "--set",
                         "horizon=12", *chosen, "--no-tracking", "-o", work / "stat", cwd=work)["wall"]
            s = manifest(work / "stat")
            print(f"stat-forecast: {wall:.0f} s in all (fit on the training parts + forecasts, then refit on all "
                  f"data); primary {s['primary_model']}; intervals {s['intervals']['method']}")
            table(s["metrics"], s["primary_model"])
            return
        wall = forge("run", "--recipe", "lstm-forecast", "--data", data, "--set", "id_column=id", "--set",
                     "horizon=12", "--set", "window=24", "--set", "batch_size=256", "--set", "learning_rate=0.003",
                     "--set", f"max_epochs={epochs}", "--set", "patience=5", "--no-tracking", "-o", work / "lstm",
                     cwd=work)["wall"]
        m = manifest(work / "lstm")
        steps = [json.loads(x) for x in (work / "lstm" / "metrics.jsonl").read_text().splitlines()]
        epoch_times = [b["time"] - a["time"] for a, b in itertools.pairwise(steps) if b.get("step") and a.get("step")]
        print(f"lstm-forecast: {wall:.0f} s in all, {m['metrics']['epochs']:.0f} epochs of "
              f"{sorted(epoch_times)[len(epoch_times) // 2]:.1f} s; the rest is reading, baselines, report")
        table(m["metrics"], "LSTM")
        c = m["comparison"]
        print(f"LSTM − best baseline ({c['best_baseline']}): {c['mase_difference']:+.3f} MASE, 95% interval "
              f"{c['difference_interval'][0]:+.3f} to {c['difference_interval'][1]:+.3f}; the best baseline is better "
              f"on {c.get('series_won_by_best_baseline', '-')} of {series} series")


def table(metrics: dict, own: str) -> None:
    print(f"{'model':<16}{'MASE':>8}{'sMAPE %':>9}{'cov80':>7}{'cov95':>7}   (mean over series; test split)")
    for name in [own, *[m for m in MODELS if m != own]]:
        key = "test" if name == own else KEYS[name]
        if f"{key}_mase" in metrics:
            print(f"{name:<16}{metrics[key + '_mase']:>8.3f}{metrics[key + '_smape']:>9.2f}"
                  f"{metrics[key + '_coverage_80']:>7.2f}{metrics[key + '_coverage_95']:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["classic", "panel-stat", "panel-lstm"])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--models", default="", help="panel-stat: models to fit (default: stat-forecast's)")
    args = parser.parse_args()
    classic() if args.part == "classic" else panel(args.part, args.series, args.epochs, args.models)


if __name__ == "__main__":
    main()
