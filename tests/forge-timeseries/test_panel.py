"""Many series (an id column): one global LSTM with series-level scaling, statsforecast per series in parallel,
metrics per series and aggregated, intervals near their nominal coverage, /forecast by id, and bad panels."""

from __future__ import annotations

import csv
import json

import httpx
import pytest
from series_files import panel_rows, write_panel
from support import Server


def manifest(path):
    return json.loads((path / "forge.json").read_text())


@pytest.mark.parametrize("run", ["panel-lstm", "panel-stat"])
def test_panel_trains_one_report_per_series(forecast_runs, run):
    m = manifest(forecast_runs / run)
    assert m["status"] == "completed" and m["dataset"]["series"] == 24
    rows = list(csv.DictReader((forecast_runs / run / "series_metrics.csv").open()))
    models = {r["model"] for r in rows}
    assert len(models) in (4, 5) and len(rows) == 24 * len(models)
    assert {r["id"] for r in rows} == {f"s{i:02d}" for i in range(24)}
    own = "LSTM" if run == "panel-lstm" else m["primary_model"]
    mase = [float(r["mase"]) for r in rows if r["model"] == own]
    assert m["metrics"]["test_mase"] == pytest.approx(sum(mase) / len(mase), rel=1e-4)  # mean over series
    assert "series_won_by_best_baseline" in m["comparison"]


@pytest.mark.parametrize("run", ["panel-lstm", "panel-stat"])
def test_panel_intervals_cover_near_their_nominal_rate(forecast_runs, run):
    """Conformal intervals calibrated on the validation part, measured on the test windows (24 series × 6)."""
    metrics = manifest(forecast_runs / run)["metrics"]
    assert 0.65 <= metrics["test_coverage_80"] <= 0.95, metrics["test_coverage_80"]
    assert 0.85 <= metrics["test_coverage_95"] <= 1.0, metrics["test_coverage_95"]


def test_panel_lstm_scales_each_series(forecast_runs):
    spec = json.loads((forecast_runs / "panel-lstm" / "artifact" / "forecaster.json").read_text())
    assert spec["id_column"] == "store" and len(spec["series_scales"]) == 24
    scales = sorted(v[0] for v in spec["series_scales"].values())
    assert scales[-1] > 5 * scales[0]  # the series differ in size; each keeps its own scale
    history = json.loads((forecast_runs / "panel-lstm" / "artifact" / "history.json").read_text())
    assert [s["id"] for s in history["series"]] == [f"s{i:02d}" for i in range(24)]


@pytest.mark.parametrize("run", ["panel-lstm", "panel-stat"])
def test_panel_forecast_by_id(forge_cli, forecast_runs, run):
    with Server(forge_cli, forecast_runs / run) as server:
        a = httpx.post(f"{server.url}/forecast", json={"id": "s00"}).json()
        b = httpx.post(f"{server.url}/forecast", json={"id": "s01"}).json()
        assert a["id"] == "s00" and len(a["forecast"]) == 6
        assert a["forecast"][0]["timestamp"][:10] == "2020-01-01"  # s00: 60 months from 2015-01
        assert b["forecast"][0]["timestamp"][:10] == "2019-09-01"  # s01: 56 months
        assert a["forecast"][0]["value"] != b["forecast"][0]["value"]
        for p in a["forecast"]:
            assert p["lo_95"] <= p["lo_80"] <= p["value"] <= p["hi_80"] <= p["hi_95"]
        batch = httpx.post(f"{server.url}/forecast/batch", json={"requests": [{"id": "s00"}, {"id": "s01"}]}).json()
        for got, single in zip(batch["results"], [a, b], strict=True):  # batched: equal up to float rounding
            assert [p["timestamp"] for p in got["forecast"]] == [p["timestamp"] for p in single["forecast"]]
            assert [p["hi_95"] for p in got["forecast"]] == pytest.approx([p["hi_95"] for p in single["forecast"]])
        missing = httpx.post(f"{server.url}/forecast", json={})
        assert missing.status_code == 422
        assert "id: required: the model was trained on 24 series ('s00', 's01'" in missing.json()["error"]["message"]
        unknown = httpx.post(f"{server.url}/forecast/batch", json={"requests": [{"id": "s00"}, {"id": "x"}]})
        assert unknown.status_code == 422 and unknown.json()["error"]["message"].startswith("requests.1.id: unknown")
        history = [{"timestamp": f"2030-{m:02d}-01", "value": 50 + m} for m in range(1, 13)]
        given = httpx.post(f"{server.url}/forecast", json={"id": "new-store", "history": history * 2})
        if run == "panel-lstm":  # a global model forecasts a new series from its history (scaled by it)
            history = [{"timestamp": f"{2030 + m // 12}-{m % 12 + 1:02d}-01", "value": 50 + m} for m in range(24)]
            given = httpx.post(f"{server.url}/forecast", json={"id": "new-store", "history": history})
            assert given.status_code == 200 and given.json()["forecast"][0]["timestamp"][:10] == "2032-01-01"
        else:
            assert given.status_code == 422 and "id: unknown series 'new-store'" in given.json()["error"]["message"]


# Bad panels: one line naming the series and the row, exit 2.
def _panel_with(edit):
    rows = panel_rows(n_series=3, n=40)
    return edit(rows)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: [f"r{i},2000-01-01,{i}" for i in range(1, 6)],
     "p.csv:2: series 'r1' has a single point, and so do all 5 series: is 'store' the column that names the series?"),
    (lambda rows: [r for r in rows if not r.startswith("s02")] + ["s02,2015-01-01,3.0"],
     "p.csv:78: series 's02' has a single point"),
    (lambda rows: [*rows[:45], "s01,2015-06-01,x", *rows[46:]],
     "p.csv:47: value 'x' in column 'value' is not a number (series 's01')"),
    (lambda rows: [*rows[:45], rows[44], *rows[46:]],
     "p.csv:47: duplicate timestamp 2015-05-01 in series 's01' (first on line 46)"),
    (lambda rows: rows[:96],
     "p.csv: series 's02' (lines 78-97): 20 points is shorter than window + horizon + validation + test "
     "(12 + 6 + 6 + 6 = 30)"),
])
def test_bad_panel_one_line(forge_cli, edit, message):
    write_panel(forge_cli.cwd / "p.csv", _panel_with(edit))
    result = forge_cli("run", "--recipe", "lstm-forecast", "--data", "p.csv", "--set", "id_column=store",
                       "--set", "window=12", "--set", "horizon=6", "--set", "max_epochs=1", "--no-tracking",
                       "-o", "r")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {forge_cli.cwd / message}"


def test_stat_forecast_stops_cleanly_on_ctrl_c(forge_cli):
    """The first Ctrl-C drops the remaining series (worker processes ignore it; the run stops them): exit 130, the
    run is 'interrupted' and no artifact looks complete."""
    import signal
    import time

    write_panel(forge_cli.cwd / "p.csv", n_series=120, n=60)
    proc = forge_cli.popen("run", "--recipe", "stat-forecast", "--data", "p.csv", "--set", "id_column=store",
                           "--set", "horizon=6", "--no-tracking", "-o", "r")
    log = forge_cli.cwd / "r" / "run.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "statsforecast" in log.read_text()):
        time.sleep(0.05)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()
    assert manifest(forge_cli.cwd / "r")["status"] == "interrupted"
    assert not (forge_cli.cwd / "r" / "artifact" / "forge.json").exists()


def test_panel_evaluates_through_forge_eval(forge_cli, forecast_runs):
    import shutil

    shutil.copytree(forecast_runs / "panel-stat", forge_cli.cwd / "panel-stat")
    result = forge_cli("eval", "panel-stat", "--suite", "backtest", "--data", forecast_runs / "panel.csv",
                       "--set", "n_windows=1", "--set", "baselines=[]", "--json", check=True, timeout=600)
    printed = json.loads(result.stdout)
    assert printed["artifact_kind"] == "stat-forecaster" and "mase" in printed["metrics"]
    [kept] = list((forge_cli.cwd / "panel-stat" / "artifact" / "evals").iterdir())
    records = [json.loads(line) for line in (kept / "records.jsonl").read_text().splitlines()]
    assert len(records) == 24  # one per series (one window each)
    assert len({r.get("id") or r.get("series") or json.dumps(r.get("input")) for r in records}) == 24
