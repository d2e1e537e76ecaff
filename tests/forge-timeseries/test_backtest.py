"""The ``backtest`` evaluator, called as ``forge eval`` calls it: ``evaluate(artifact, EvalRequest)``."""

from __future__ import annotations

import pytest
from forge import Artifact, ConfigError, DataError, EvalRequest
from series_files import panel_rows, write_panel, write_series


def backtest(run, data, tmp_path, **options):
    from forge.plugins import load_plugins

    evaluator = load_plugins().get("evaluators", "backtest").item
    return evaluator.run(Artifact.load(run), EvalRequest(data=data, options=options, output_dir=tmp_path / "eval",
                                                         seed=3, log=lambda message: None))


def test_backtest_is_registered_for_every_forecaster_kind():
    from forge.plugins import load_plugins

    evaluator = load_plugins().get("evaluators", "backtest")
    assert evaluator.plugin == "forge-timeseries"
    assert set(evaluator.item.accepts) == {"forecaster", "stat-forecaster", "onnx-forecaster"}


@pytest.mark.parametrize("run", ["lstm", "stat"])
def test_backtest_one_series(forecast_runs, tmp_path, run):
    result = backtest(forecast_runs / run, forecast_runs / "s.csv", tmp_path, n_windows="4", step="3")
    assert len(result.records) == 4
    assert [r["input"]["origin"][:10] for r in result.records] == ["2005-06-01", "2005-09-01", "2005-12-01",
                                                                    "2006-03-01"]
    assert [r["input"]["history_points"] for r in result.records] == [65, 68, 71, 74]
    metrics = result.metrics
    for key in ("mae", "rmse", "smape", "mase", "coverage_80", "coverage_95", "msis"):
        assert key in metrics and f"seasonal_naive_{key}" in metrics and f"auto_ets_{key}" in metrics
        low, high = result.intervals[key]
        assert low <= metrics[key] <= high, key
        assert len(result.per_example[key]) == 4
    best = result.extra["best_baseline"]
    assert metrics["best_baseline_mase"] == min(metrics[f"{k}_mase"] for k in
                                                ("seasonal_naive", "auto_ets", "auto_arima", "auto_theta"))
    assert metrics["relative_mase"] == pytest.approx(metrics["mase"] / metrics["best_baseline_mase"])
    assert best in ("SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta")
    record = result.records[0]
    assert len(record["expected"]) == len(record["output"]) == 6 and record["score"] == record["mase"]
    assert set(record["baselines"]) == {"SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta"}
    # the stat-forecaster was refitted on all of s.csv, the LSTM saw it up to its test part
    assert sum(r["seen_in_training"] for r in result.records) == (4 if run == "stat" else 3)
    assert result.plots[0].read_bytes()[:4] == b"\x89PNG"
    again = backtest(forecast_runs / run, forecast_runs / "s.csv", tmp_path, n_windows="4", step="3")
    assert again.metrics == metrics and again.intervals == result.intervals  # seeded


def test_backtest_panel_resamples_series(forecast_runs, tmp_path):
    result = backtest(forecast_runs / "panel-lstm", forecast_runs / "panel.csv", tmp_path, n_windows=2,
                      baselines="AutoETS", refit_baselines="false")
    assert len(result.records) == 24 * 2 and result.extra["series"] == 24
    assert {r["input"]["series"] for r in result.records} == {f"s{i:02d}" for i in range(24)}
    assert set(result.records[0]["baselines"]) == {"SeasonalNaive", "AutoETS"}
    assert "auto_arima_mase" not in result.metrics
    low, high = result.intervals["mase"]
    assert low < result.metrics["mase"] < high


def test_backtest_stat_panel_and_new_series(forecast_runs, tmp_path):
    result = backtest(forecast_runs / "panel-stat", forecast_runs / "panel.csv", tmp_path, n_windows=1,
                      baselines="[]")
    assert len(result.records) == 24 and 0 <= result.metrics["coverage_95"] <= 1
    write_panel(tmp_path / "other.csv", ["zz," + r.split(",", 1)[1] for r in panel_rows(n_series=1, n=60)])
    with pytest.raises(DataError, match=r"other.csv: series 'zz' \(lines 2-61\): id: unknown series 'zz'"):
        backtest(forecast_runs / "panel-stat", tmp_path / "other.csv", tmp_path, n_windows=1)
    global_model = backtest(forecast_runs / "panel-lstm", tmp_path / "other.csv", tmp_path, n_windows=1,
                            baselines="[]")
    assert len(global_model.records) == 1  # a global LSTM forecasts a series it never saw


def test_backtest_bad_options_and_data(forecast_runs, tmp_path):
    with pytest.raises(ConfigError, match=r"--set windows=3: Extra inputs are not permitted \(backtest options: "):
        backtest(forecast_runs / "lstm", forecast_runs / "s.csv", tmp_path, windows=3)
    with pytest.raises(ConfigError, match=r"--set n_windows=many: Input should be a valid integer"):
        backtest(forecast_runs / "lstm", forecast_runs / "s.csv", tmp_path, n_windows="many")
    with pytest.raises(ConfigError, match=r"--set horizon=7: this forecaster forecasts at most 6 steps"):
        backtest(forecast_runs / "lstm", forecast_runs / "s.csv", tmp_path, horizon=7)
    write_series(tmp_path / "short.csv", n=30)
    with pytest.raises(DataError, match=r"short.csv: 30 points are too few for 4 windows of 6 steps every 6 after "
                                        r"24 points of history \(needs 48\)"):
        backtest(forecast_runs / "lstm", tmp_path / "short.csv", tmp_path, n_windows=4)
    write_series(tmp_path / "weekly.csv", n=80, freq="W-SUN")
    with pytest.raises(DataError, match=r"weekly.csv: frequency W-SUN, but the artifact forecasts at MS"):
        backtest(forecast_runs / "lstm", tmp_path / "weekly.csv", tmp_path)


def test_backtest_defaults_to_the_training_data(forecast_runs, tmp_path):
    result = backtest(forecast_runs / "lstm", None, tmp_path, n_windows=1, baselines="AutoETS")
    assert result.extra["data"] == str(forecast_runs / "s.csv") and len(result.records) == 1
