"""The whole lifecycle through the real CLI and a real MLflow store (issue 9, "Done when"): train → forge eval with a
gate → forge registry add → policy → promote refused (gate fails / no eval) → eval of the registry version → promote
allowed → forge serve models:/NAME@production, and the same model through plain mlflow.pyfunc.load_model."""

from __future__ import annotations

import json

import httpx
import pytest
from series_files import write_series
from support import Server


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def refused(result) -> str:
    assert result.returncode == 3, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_train_eval_register_promote_serve(forge_cli, tmp_path, monkeypatch):
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    forge_cli.env["MLFLOW_TRACKING_URI"] = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    write_series(forge_cli.cwd / "s.csv")
    stat = ["--recipe", "stat-forecast", "--data", "s.csv", "--set", "horizon=6"]
    ok(forge_cli("run", *stat, "--set", "models=[AutoETS]", "-o", "good"))
    ok(forge_cli("run", *stat, "--set", "models=[SeasonalNaive]", "-o", "naive"))
    backtest = ["--suite", "backtest", "--data", "s.csv", "--set", "baselines=[]"]

    # the naive model fails its eval gate (exit 3); the result is kept with the artifact and travels with it
    err = refused(forge_cli("eval", "naive", *backtest, "--gate", "mase<0.5"))
    assert "gate mase<0.5: FAILED" in err
    naive = json.loads(ok(forge_cli("registry", "add", "naive", "--name", "airline", "--json")))
    good = json.loads(ok(forge_cli("registry", "add", "good", "--name", "airline", "--json")))
    assert (naive["version"], naive["evals"], good["version"], good["evals"]) == ("1", ["backtest"], "2", [])
    ok(forge_cli("registry", "policy", "airline", "--gate", "mase<0.5"))

    err = refused(forge_cli("registry", "promote", "airline", "1", "--alias", "production"))
    assert "refusing to promote models:/airline/1 to @production" in err
    assert "gate mase<0.5: mase = 1" in err and "in backtest (bound 0.5)" in err
    err = refused(forge_cli("registry", "promote", "airline", "2", "--alias", "production"))
    assert "gate mase<0.5: no recorded eval has metric 'mase'" in err

    # evaluating the registry version records the result on it (files under ./evals/airline-v2/)
    ok(forge_cli("eval", "models:/airline/2", *backtest, "--gate", "mase<0.5"))
    assert list((forge_cli.cwd / "evals" / "airline-v2").glob("backtest-*/eval.json"))
    shown = json.loads(ok(forge_cli("registry", "show", "airline/2", "--json")))
    assert shown["evals"]["backtest"]["passed"] is True and shown["evals"]["backtest"]["metrics"]["mase"]["value"] < 0.5
    promoted = json.loads(ok(forge_cli("registry", "promote", "airline", "2", "--alias", "production", "--json")))
    assert promoted["version"] == "2" and promoted["forced"] is False

    with Server(forge_cli, "models:/airline@production") as server:
        served = httpx.post(f"{server.url}/forecast", json={"horizon": 4}, timeout=60).json()
    assert served["model"] == "AutoETS" and len(served["forecast"]) == 4

    # plain MLflow: the registered model predicts with forge's forecaster predictor, as the server does
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model("models:/airline@production")
    assert model.predict([{"horizon": 4}]) == [served]
    frame = model.predict(pd.DataFrame({"horizon": [4, 2]}))
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    assert frame["forecast"][0] == served["forecast"] and len(frame["forecast"][1]) == 2
