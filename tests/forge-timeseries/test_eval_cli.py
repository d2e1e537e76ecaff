"""``forge eval --suite backtest`` through the real CLI on a tracked stat-forecast run: the result kept with the
artifact, logged into the run's own MLflow run, listed in its manifest; a baseline reused; gates exit 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from series_files import write_series


def forge(cwd: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run([sys.executable, "-m", "forge", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_backtest_through_forge_eval(tmp_path, mlflow_uri):
    write_series(tmp_path / "s.csv")
    trained = forge(tmp_path, mlflow_uri, "run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "horizon=6",
                    "-o", "stat")
    assert trained.returncode == 0, trained.stderr
    args = ["eval", "stat", "--suite", "backtest", "--data", "s.csv", "--set", "n_windows=2", "--set", "baselines=[]"]
    result = forge(tmp_path, mlflow_uri, *args, "--gate", "mase<1", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["artifact_kind"] == "stat-forecaster" and printed["passed"] is True
    assert printed["options"] == {"n_windows": 2, "baselines": []} and printed["plots"] == ["backtest.png"]
    mase = printed["metrics"]["mase"]
    assert mase["low"] <= mase["value"] <= mase["high"]
    [kept] = list((tmp_path / "stat" / "artifact" / "evals").iterdir())
    assert (kept / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    assert len((kept / "records.jsonl").read_text().splitlines()) == 2
    manifest = json.loads((tmp_path / "stat" / "forge.json").read_text())
    assert manifest["evals"][0]["metrics"]["mase"] == mase["value"]
    assert printed["mlflow_run_id"] == manifest["mlflow"]["run_id"]
    import mlflow

    logged = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri).get_run(printed["mlflow_run_id"]).data.metrics
    assert logged["eval/mase"] == pytest.approx(mase["value"]) and "eval/relative_mase_high" in logged
    # compared with itself: the stored result is reused, no difference is outside the intervals; a gate fails
    again = forge(tmp_path, mlflow_uri, *args, "--baseline", "stat", "--gate", "mase<=baseline",
                  "--gate", "relative_mase<0.001")
    assert again.returncode == 3, again.stderr
    assert "reusing its backtest eval" in again.stderr and "gate failed: relative_mase<0.001" in again.stderr
    table = again.stdout.split("baseline stat", 1)[1]
    mase_row = next(line for line in table.splitlines() if line.startswith("mase "))
    assert mase_row.split()[-2:] == ["0", "no"]
    assert "gate mase<=baseline: passed" in again.stdout


@pytest.mark.slow
def test_eval_suites_at_the_end_of_a_tracked_run(tmp_path, mlflow_uri):
    write_series(tmp_path / "s.csv")
    (tmp_path / "c.yaml").write_text(
        "recipe: stat-forecast\ndata: s.csv\nhorizon: 6\nmodels: [AutoETS]\neval_suites:\n"
        "  - suite: backtest\n    data: s.csv\n    options: {n_windows: 2, baselines: []}\n    gates: ['mase<0.001']\n")
    result = forge(tmp_path, mlflow_uri, "run", "-c", "c.yaml", "-o", "r")
    assert result.returncode == 3, result.stderr
    manifest = json.loads((tmp_path / "r" / "forge.json").read_text())
    assert manifest["status"] == "completed" and manifest["evals"][0]["passed"] is False
    import mlflow

    run = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri).get_run(manifest["mlflow"]["run_id"])
    assert run.data.metrics["eval/mase"] == pytest.approx(manifest["evals"][0]["metrics"]["mase"])
    assert run.info.status == "FINISHED"
