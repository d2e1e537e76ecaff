"""Issue 9's "done when": train → ``forge eval`` with a gate → ``forge registry add`` → promote refused when the
policy's gate fails and allowed when it passes → ``forge serve models:/NAME@production``, all through the real CLI and
a real MLflow store (sqlite), and the registered model loads with plain ``mlflow.pyfunc.load_model``."""

from __future__ import annotations

import json

import httpx
from support import Server
from test_classify import REVIEWS, write_reviews


def as_json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_train_eval_register_promote_serve(forge_cli, tiny_bert, tmp_path, monkeypatch):
    store = f"sqlite:///{tmp_path / 'registry.db'}"
    forge_cli.env["MLFLOW_TRACKING_URI"] = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    write_reviews(forge_cli.cwd / "r.csv")
    write_reviews(forge_cli.cwd / "test.csv", REVIEWS[:6])
    common = ["--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", "--set", "per_device_train_batch_size=8"]
    # an untrained-ish model (one step at a tiny learning rate) and a trained one
    forge_cli("run", *common, "--set", "max_steps=1", "--set", "learning_rate=1e-9", "-o", "weak", check=True)
    forge_cli("run", *common, "--set", "num_train_epochs=30", "--set", "learning_rate=1e-3", "-o", "strong",
              check=True, timeout=900)

    weak = forge_cli("eval", "weak", "--suite", "classification", "--data", "test.csv", "--gate", "accuracy>=0.9",
                     "--json")
    assert weak.returncode == 3, weak.stderr  # the gate fails: exit 3, and the result is still kept
    weak_eval = json.loads(weak.stdout)
    assert weak_eval["passed"] is False and weak_eval["metrics"]["accuracy"]["value"] < 0.9
    strong_eval = as_json(forge_cli("eval", "strong", "--suite", "classification", "--data", "test.csv",
                                    "--gate", "accuracy>=0.9", "--baseline", "weak", "--json"))
    assert strong_eval["passed"] is True and strong_eval["metrics"]["accuracy"]["value"] == 1.0
    assert strong_eval["baseline"]["metrics"]["accuracy"]["value"] == weak_eval["metrics"]["accuracy"]["value"]

    v1 = as_json(forge_cli("registry", "add", "weak", "--name", "sentiment", "--json"))
    v2 = as_json(forge_cli("registry", "add", "strong", "--name", "sentiment", "--json"))
    assert (v1["version"], v2["version"]) == ("1", "2") and v2["evals"] == ["classification"]
    forge_cli("registry", "policy", "sentiment", "--gate", "accuracy>=0.9", check=True)

    refused = forge_cli("registry", "promote", "sentiment", "1", "--alias", "production")
    assert refused.returncode == 3 and "Traceback" not in refused.stderr
    assert "gate accuracy>=0.9" in refused.stderr
    promoted = as_json(forge_cli("registry", "promote", "sentiment", "2", "--alias", "production", "--json"))
    assert promoted["alias"] == "production" and promoted["version"] == "2"
    assert as_json(forge_cli("registry", "show", "sentiment@production", "--json"))["version"] == "2"

    # the registered model is a plain MLflow model
    import mlflow

    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model("models:/sentiment@production")
    [prediction] = model.predict([{"text": "great film"}])
    assert prediction["label"] == "positive"

    # forge eval and forge serve resolve registry references
    again = as_json(forge_cli("eval", "models:/sentiment@production", "--suite", "classification",
                              "--data", "test.csv", "--json"))
    assert again["metrics"]["accuracy"]["value"] == 1.0
    with Server(forge_cli, "models:/sentiment@production") as server:
        answer = httpx.post(f"{server.url}/predict", json={"text": "awful film"}).json()
        assert answer["label"] == "negative"
    missing = forge_cli("serve", "models:/sentiment@staging")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
