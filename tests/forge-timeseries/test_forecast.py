"""lstm-forecast recipe, timeseries template and /forecast server, end to end (one series; panels: test_panel.py)."""

from __future__ import annotations

import json

import httpx
import pytest
from series_files import write_series
from support import Server, assert_held, burst


def manifest(run):
    return json.loads((run / "forge.json").read_text())


FAST = ["--set", "max_epochs=5", "--set", "lstm_units=[16]", "--set", "dense_units=8", "--set", "window=12",
        "--set", "horizon=6", "--no-tracking"]


def test_recipe_end_to_end(forge_cli):
    write_series(forge_cli.cwd / "s.csv")
    forge_cli("run", "--recipe", "lstm-forecast", "--data", "s.csv", *FAST, "-o", "r", check=True)
    run = forge_cli.cwd / "r"
    m = manifest(run)
    assert m["status"] == "completed" and m["artifact"]["kind"] == "forecaster"
    assert {"test_mae", "test_rmse", "test_smape", "test_mase", "seasonal_naive_mase"} <= set(m["metrics"])
    assert m["dataset"]["freq"] == "MS" and m["dataset"]["season_length"] == 12
    files = {f["path"] for f in m["artifact"]["files"]}
    assert files == {"model.safetensors", "forecaster.json", "history.json"}
    assert (run / "forecast.png").read_bytes()[:4] == b"\x89PNG" and m["attachments"] == ["forecast.png"]
    # every report shows the statistical baselines, fitted on the same training part
    for model in ("seasonal_naive", "auto_ets", "auto_arima", "auto_theta"):
        assert {f"{model}_{k}" for k in ("mae", "rmse", "smape", "mase", "coverage_80", "coverage_95")} \
            <= set(m["metrics"]), model
    comparison = m["comparison"]
    assert set(comparison["mase"]) == {"LSTM", "SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta"}
    best = min(comparison["mase"], key=comparison["mase"].get)
    assert comparison["baseline_wins"] == (best != "LSTM")
    low, high = comparison["difference_interval"]
    assert low <= comparison["mase_difference"] <= high
    log = (run / "run.log").read_text()
    assert "test MASE: " in log and ("BASELINE WINS" in log) == comparison["baseline_wins"]
    # intervals, calibrated on validation errors, with their coverage on the test window
    assert 0 <= m["metrics"]["test_coverage_80"] <= m["metrics"]["test_coverage_95"] <= 1
    spec = json.loads((run / "artifact" / "forecaster.json").read_text())
    assert spec["levels"] == [80.0, 95.0] and len(spec["intervals"]["step_scale"]) == 6
    rows = (run / "series_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("id,model,mae,rmse,smape,mase,coverage_80,coverage_95") and len(rows) == 1 + 5


def test_deterministic_with_a_seed_and_resumable(forge_cli):
    import signal
    import time

    write_series(forge_cli.cwd / "s.csv")
    args = ["run", "--recipe", "lstm-forecast", "--data", "s.csv", *FAST, "--set", "max_epochs=30",
            "--set", "patience=100", "--set", "checkpoint_every=5"]
    forge_cli(*args, "-o", "a", check=True)
    forge_cli(*args, "-o", "b", check=True)
    assert manifest(forge_cli.cwd / "a")["metrics"] == manifest(forge_cli.cwd / "b")["metrics"]
    proc = forge_cli.popen(*args, "-o", "c")
    run = forge_cli.cwd / "c"
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "checkpoint-10").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if manifest(run)["status"] != "completed":  # killed half-way (a fast machine may have finished first)
        forge_cli("run", "--resume", run, check=True)
    a = manifest(forge_cli.cwd / "a")["metrics"]
    c = manifest(run)["metrics"]
    assert c["test_mase"] == pytest.approx(a["test_mase"], rel=1e-6)


def test_template_trains_fast_and_beats_seasonal_naive(forge_cli):
    forge_cli("init", "timeseries", "proj", check=True)
    project = forge_cli.cwd / "proj"
    forge_cli("run", "--config", "config.yaml", "-o", "r", "--no-tracking", cwd=project, check=True, timeout=120)
    m = manifest(project / "r")
    assert m["metrics"]["test_mase"] < m["metrics"]["seasonal_naive_mase"]
    assert json.loads((project / "r" / "artifact" / "forge.json").read_text())["beats_seasonal_naive"] is True


@pytest.mark.parametrize(("rows", "header", "message"), [
    (["2000-01-01,1", "2000-02-01,x"], "date,value", "s.csv:3: value 'x' in column 'value' is not a number"),
    (["2000-01-01,1", "2000-13-01,2"], "date,value",
     "s.csv:3: timestamp '2000-13-01' in column 'date' is not a date/time"),
    (["2000-01-01,1", "2000-03-01,2", "2000-02-01,3"], "date,value",
     "s.csv:4: timestamps are not sorted (2000-02-01 00:00:00 after 2000-03-01 00:00:00)"),
    (["2000-01-01,1", "2000-02-01,2", "2000-02-01,3"], "date,value", "s.csv:4: duplicate timestamp 2000-02-01"),
    (["2000-01-01,1"], "when,value", "s.csv: missing column 'date' (columns: when, value)"),
])
def test_bad_series_one_line(forge_cli, rows, header, message):
    write_series(forge_cli.cwd / "s.csv", rows=rows, header=header)
    result = forge_cli("run", "--recipe", "lstm-forecast", "--data", "s.csv", "--no-tracking", "-o", "r")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {forge_cli.cwd / message}"


def test_gaps_and_short_series(forge_cli):
    import pandas as pd

    stamps = [t for i, t in enumerate(pd.date_range("2000-01-01", periods=80, freq="MS")) if i not in (30, 31)]
    write_series(forge_cli.cwd / "g.csv", rows=[f"{t.date()},{i + 1}" for i, t in enumerate(stamps)])
    result = forge_cli("run", "--recipe", "lstm-forecast", "--data", "g.csv", *FAST, "-o", "r")
    assert result.returncode == 2
    assert "g.csv: 2 missing timestamp(s) at frequency MS, first 2002-07-01" in result.stderr
    assert "set fill: interpolate or fill: ffill" in result.stderr
    forge_cli("run", "--recipe", "lstm-forecast", "--data", "g.csv", *FAST, "--set", "fill=interpolate", "-o", "f",
              check=True)
    assert manifest(forge_cli.cwd / "f")["dataset"]["filled"] == 2
    write_series(forge_cli.cwd / "short.csv", n=20)
    result = forge_cli("run", "--recipe", "lstm-forecast", "--data", "short.csv", *FAST, "-o", "s")
    assert result.returncode == 2
    assert "short.csv: 20 points is shorter than window + horizon + validation + test (12 + 6 + 6 + 6 = 30)" \
        in result.stderr


def test_forecast_server(forge_cli):
    write_series(forge_cli.cwd / "s.csv")
    forge_cli("run", "--recipe", "lstm-forecast", "--data", "s.csv", *FAST, "-o", "r", check=True)
    with Server(forge_cli, "r") as server:
        stored = httpx.post(f"{server.url}/forecast", json={}).json()
        assert stored["horizon"] == 6 and len(stored["forecast"]) == 6
        assert stored["forecast"][0]["timestamp"] == "2006-09-01T00:00:00"  # 80 months after 2000-01
        assert stored["levels"] == [80.0, 95.0] and stored["model"] == "LSTM" and stored["id"] is None
        for p in stored["forecast"]:
            assert p["lo_95"] <= p["lo_80"] <= p["value"] <= p["hi_80"] <= p["hi_95"], p
        narrow = httpx.post(f"{server.url}/forecast", json={"level": [50]}).json()["forecast"][0]
        assert set(narrow) == {"timestamp", "value", "lo_50", "hi_50"}
        assert stored["forecast"][0]["lo_80"] <= narrow["lo_50"] <= narrow["hi_50"] <= stored["forecast"][0]["hi_80"]
        assert set(httpx.post(f"{server.url}/forecast", json={"level": []}).json()["forecast"][0]) \
            == {"timestamp", "value"}
        history = [{"timestamp": f"2010-{m:02d}-01", "value": 100 + m} for m in range(1, 13)]
        mine = httpx.post(f"{server.url}/forecast", json={"history": history, "horizon": 3}).json()
        assert [p["timestamp"][:10] for p in mine["forecast"]] == ["2011-01-01", "2011-02-01", "2011-03-01"]
        batch = httpx.post(f"{server.url}/forecast/batch", json={"requests": [{}, {"history": history}]}).json()
        first = batch["results"][0]  # batched with another window: equal up to float32 rounding
        assert [p["timestamp"] for p in first["forecast"]] == [p["timestamp"] for p in stored["forecast"]]
        assert [p["hi_95"] for p in first["forecast"]] == pytest.approx([p["hi_95"] for p in stored["forecast"]])
        assert len(batch["results"][1]["forecast"]) == 6
        for body, reason in [
            ({"horizon": 7}, "horizon: at most 6"),
            ({"history": history[:5]}, "history: needs at least 12 points, got 5"),
            ({"history": history[:6] + history[7:] + history[:1]}, "timestamps must be consecutive"),
            ({"history": [{"timestamp": "x", "value": 1}] * 12}, "unparseable timestamp"),
            ({"history": [{"timestamp": "2010-01-01", "value": "lots"}] * 12}, "history.0.value"),
            ({"horizon": "soon"}, "horizon"),
            ({"id": "store-1"}, "id: this model was trained on one series"),
            ({"level": [100]}, "level: each level is a percentage strictly between 0 and 100"),
            ({"model": "AutoETS"}, "model: 'AutoETS' is not one of this artifact's models (LSTM)"),
        ]:
            response = httpx.post(f"{server.url}/forecast", json=body)
            assert response.status_code == 422, body
            assert reason in response.json()["error"]["message"], response.json()
        # issue 17: 64 concurrent clients (stored tail, own history, narrower levels), a quarter of them bad: 2xx/4xx
        load = burst(server.url, "/forecast", [{}, {"history": history, "horizon": 3}, {"level": [50]}],
                     bad=[{"horizon": 7}, {"history": history[:5]}, {"horizon": "soon"}, '{"id": "\\ud800"}',
                          '{"model": "\\ud800"}'])
        assert_held(load)
        assert load[("bad", 422)] == 32, load
