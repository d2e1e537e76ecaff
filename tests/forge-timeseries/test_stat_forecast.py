"""stat-forecast: statsforecast models through the real CLI, their artifact (no pickle) and the /forecast server."""

from __future__ import annotations

import json

import httpx
import pytest
from series_files import write_series
from support import Server, assert_held, burst


def manifest(path):
    return json.loads((path / "forge.json").read_text())


def test_stat_forecast_end_to_end(forecast_runs):
    run = forecast_runs / "stat"
    m = manifest(run)
    assert m["status"] == "completed" and m["artifact"]["kind"] == "stat-forecaster"
    files = {f["path"] for f in m["artifact"]["files"]}
    assert files == {"statsforecast.json", "params.safetensors", "history.json"}
    for file in files:  # fitted parameters as JSON + safetensors: nothing a loader would unpickle
        assert not (run / "artifact" / file).read_bytes().startswith(b"\x80"), file
    metrics = m["metrics"]
    primary = m["primary_model"]
    # auto: the best validation MASE picks the primary model; its test metrics are test_*, the others' by name
    validation = {k: metrics[f"{k}_validation_mase"] for k in ("auto_ets", "auto_arima", "auto_theta",
                                                                "seasonal_naive")}
    assert validation[{"AutoETS": "auto_ets", "AutoARIMA": "auto_arima", "AutoTheta": "auto_theta",
                       "SeasonalNaive": "seasonal_naive"}[primary]] == min(validation.values())
    assert {"test_mae", "test_rmse", "test_smape", "test_mase", "test_coverage_80", "test_coverage_95",
            "test_msis"} <= set(metrics)
    assert set(m["comparison"]["mase"]) == {"AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"}
    assert m["intervals"] == {"method": "model", "calibration_errors": 6}  # too few to calibrate one series
    assert (run / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    assert len((run / "series_metrics.csv").read_text().splitlines()) == 1 + 4
    spec = json.loads((run / "artifact" / "statsforecast.json").read_text())
    assert spec["models"] == ["AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"] and spec["primary"] == primary
    assert spec["series"][0]["id"] is None and set(spec["series"][0]["models"]) == set(spec["models"])


def test_stat_forecast_server(forge_cli, forecast_runs):
    with Server(forge_cli, forecast_runs / "stat") as server:
        stored = httpx.post(f"{server.url}/forecast", json={}).json()
        assert stored["horizon"] == 6 and stored["model"] == manifest(forecast_runs / "stat")["primary_model"]
        assert stored["forecast"][0]["timestamp"] == "2006-09-01T00:00:00"
        for p in stored["forecast"]:
            assert p["lo_95"] <= p["lo_80"] <= p["value"] <= p["hi_80"] <= p["hi_95"], p
        arima = httpx.post(f"{server.url}/forecast", json={"model": "AutoARIMA", "horizon": 24}).json()
        assert arima["model"] == "AutoARIMA" and len(arima["forecast"]) == 24  # statistical models go past it
        history = [{"timestamp": f"{2010 + m // 12}-{m % 12 + 1:02d}-01", "value": 100 + m + 5 * (m % 12 == 6)}
                   for m in range(36)]
        mine = httpx.post(f"{server.url}/forecast", json={"history": history, "horizon": 3}).json()
        assert [p["timestamp"][:10] for p in mine["forecast"]] == ["2013-01-01", "2013-02-01", "2013-03-01"]
        assert 120 < mine["forecast"][0]["value"] < 150  # continues the given history, not the stored series
        for body, reason in [
            ({"model": "Prophet"}, "model: 'Prophet' is not one of this artifact's models"),
            ({"history": history[:10]}, "history: needs at least 24 points, got 10"),
            ({"horizon": 5000}, "horizon: at most 1000"),
            ({"id": "a"}, "id: this model was trained on one series"),
        ]:
            response = httpx.post(f"{server.url}/forecast", json=body)
            assert response.status_code == 422, body
            assert reason in response.json()["error"]["message"], response.json()
        # issue 17: 64 concurrent clients (stored series, another model, levels), a quarter of them bad: 2xx/4xx
        load = burst(server.url, "/forecast", [{}, {"model": "AutoARIMA", "horizon": 12}, {"level": [50]}],
                     bad=[{"model": "Prophet"}, {"history": history[:10]}, {"horizon": 0}, '{"model": "\\ud800"}'])
        assert_held(load)
        assert load[("bad", 422)] == 32, load


def test_stat_forecast_config_errors(forge_cli):
    write_series(forge_cli.cwd / "s.csv")
    result = forge_cli("run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "models=[AutoETS,Prophet]",
                       "--dry-run")
    assert result.returncode == 2 and "models.1: Input should be 'AutoETS', 'AutoARIMA'" in result.stderr
    result = forge_cli("run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "models=[AutoETS]",
                       "--set", "primary=AutoTheta", "--dry-run")
    assert result.returncode == 2 and "primary: AutoTheta is not in models (AutoETS)" in result.stderr
    result = forge_cli("run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "levels=[80,100]",
                       "--dry-run")
    assert result.returncode == 2 and "levels are percentages strictly between 0 and 100, got 100" in result.stderr


@pytest.mark.parametrize(("n", "message"), [
    (30, "s.csv: 30 points leave 6 for training after validation + test (12 + 12); the statistical models need at "
         "least 24 (two seasons of 12)"),
])
def test_stat_forecast_short_series(forge_cli, n, message):
    write_series(forge_cli.cwd / "s.csv", n=n)
    result = forge_cli("run", "--recipe", "stat-forecast", "--data", "s.csv", "--no-tracking", "-o", "r")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {forge_cli.cwd / message}"
    assert json.loads((forge_cli.cwd / "r" / "forge.json").read_text())["status"] == "failed"
