"""``forge registry``: versions in MLflow's Model Registry (a real sqlite store), policies, gated promotion, the pyfunc
model and ``models:/`` references — through the real CLI, with a real artifact of the test plugin's ``descent``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def manifest(path: Path) -> dict:
    return json.loads((path / "forge.json").read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store of this module's own (runs and registered models)."""
    return f"sqlite:///{tmp_path_factory.mktemp('registry-store') / 'mlflow.db'}"


@pytest.fixture
def reg(forge_cli, store, monkeypatch):
    """The CLI on this module's store; in-process calls (forge.registry, mlflow) use the same store."""
    forge_cli.env["MLFLOW_TRACKING_URI"] = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("FORGE_REGISTRY_CACHE", str(forge_cli.cwd / "cache"))
    return forge_cli


def as_json(result) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def write_eval(artifact: Path, suite: str, metrics: dict[str, float], finished: str, data_sha256: str | None = None,
               gates: list[dict] | None = None) -> dict:
    """An eval result as ``forge eval`` writes it (the eval.json contract): ARTIFACT/evals/SUITE-TIME/eval.json."""
    stamp = finished[:19].replace("-", "").replace(":", "").replace("T", "-")
    result = {
        "schema": 1, "suite": suite, "artifact": str(artifact), "artifact_kind": "scalar", "reference": str(artifact),
        "data": "heldout.csv", "data_sha256": data_sha256, "options": {}, "seed": 0,
        "metrics": {k: {"value": v, "low": v - 0.05, "high": v + 0.05} for k, v in metrics.items()},
        "gates": gates or [], "passed": None if not gates else all(g["passed"] for g in gates), "baseline": None,
        "versions": {"forge-core": "0.1.0"}, "started": finished, "finished": finished, "mlflow_run_id": None,
    }
    directory = artifact / "evals" / f"{suite}-{stamp}"
    directory.mkdir(parents=True)
    (directory / "eval.json").write_text(json.dumps(result))
    return result


class StandInPredictor:
    """A stand-in for the predictor a plugin gives ``forge.load_predictor`` (named as such: the real predictors are
    tested with the plugins' artifacts): reads the artifact's own file, so a prediction proves the files arrived."""

    def __init__(self, artifact, options):
        self.weight = json.loads((artifact.path / "weight.json").read_text())["weight"]
        self.options = options or {}

    def predict(self, rows: list[dict]) -> list[dict]:
        return [{"y": self.weight * float(row["x"]), **self.options} for row in rows]


@pytest.mark.slow
def test_lifecycle_add_policy_refused_eval_promoted_loaded(reg, monkeypatch):
    (reg.cwd / "d.txt").write_text("some data\n")
    reg("run", "--recipe", "descent", "--data", "d.txt", "--set", "steps=4", "-o", "run", check=True)
    run, artifact = reg.cwd / "run", reg.cwd / "run" / "artifact"
    run_id = manifest(run)["mlflow"]["run_id"]

    added = as_json(reg("registry", "add", "run", "--name", "scalar", "--json"))
    assert added["reference"] == "models:/scalar/1" and added["kind"] == "scalar"
    assert added["run_id"] == run_id and added["new_run"] is False  # logged in the run that trained it
    data_sha = manifest(run)["data"][0]["sha256"]
    tags = added["tags"]
    assert tags["forge.kind"] == "scalar" and tags["forge.recipe"] == "forge-testkit:descent"
    assert tags["forge.data_sha256"] == data_sha and tags["forge.version"] == "0.1.0"
    assert json.loads(tags["forge.plugins"]) == {"forge-core": "0.1.0", "forge-testkit": "0.0.1"}

    listed = as_json(reg("registry", "list", "--json"))
    assert [m["name"] for m in listed["models"]] == ["scalar"] and listed["models"][0]["latest_version"] == "1"
    versions = as_json(reg("registry", "list", "scalar", "--json"))["versions"]
    assert [(v["version"], v["kind"], v["run_id"]) for v in versions] == [("1", "scalar", run_id)]

    policy = as_json(reg("registry", "policy", "scalar", "--gate", "accuracy>=0.8", "--gate", "ece < 0.2", "--json"))
    assert policy["policy"] == ["accuracy>=0.8", "ece < 0.2"]
    assert as_json(reg("registry", "show", "scalar", "--json"))["policy"] == ["accuracy>=0.8", "ece < 0.2"]

    # no eval recorded: refused, naming the gates that have nothing to check against
    refused = reg("registry", "promote", "scalar", "1", "--alias", "production")
    err = one_line_error(refused, 3)
    assert "refusing to promote models:/scalar/1 to @production" in err
    assert "gate accuracy>=0.8: no recorded eval has metric 'accuracy'" in err

    # version 2 carries a stored eval that fails the policy: refused, naming the failing gate and its value
    write_eval(artifact, "scoring", {"accuracy": 0.6, "ece": 0.1}, "2026-11-23T10:00:00+0000", data_sha)
    second = as_json(reg("registry", "add", str(artifact), "--name", "scalar", "--json"))
    assert second["version"] == "2" and second["evals"] == ["scoring"] and second["run_id"] == run_id
    err = one_line_error(reg("registry", "promote", "scalar", "2"), 3)
    assert "gate accuracy>=0.8: accuracy = 0.6 in scoring (bound 0.8)" in err and "ece" not in err
    shown = as_json(reg("registry", "show", "scalar/2", "--json"))
    assert shown["aliases"] == [] and shown["evals"]["scoring"]["metrics"]["accuracy"]["value"] == 0.6
    assert [g["passed"] for g in shown["policy_check"]["gates"]] == [False, True]

    # a newer passing eval recorded on version 2 (what forge eval models:/scalar/2 does), an older one is kept out
    from forge import registry

    resolved = registry.resolve("models:/scalar/2")
    assert (resolved.name, resolved.version, resolved.alias) == ("scalar", "2", None)
    assert manifest(resolved.path)["kind"] == "scalar" and (resolved.path / "weight.json").is_file()
    passing = write_eval(reg.cwd / "elsewhere", "scoring", {"accuracy": 0.9, "ece": 0.05},
                         "2026-11-23T12:00:00+0000", data_sha, gates=[{"expr": "accuracy>=0.85", "passed": True}])
    registry.record_eval(resolved, passing)
    registry.record_eval(resolved, write_eval(reg.cwd / "older", "scoring", {"accuracy": 0.1, "ece": 0.9},
                                              "2026-11-23T11:00:00+0000", data_sha))
    shown = as_json(reg("registry", "show", "scalar/2", "--json"))
    recorded = shown["evals"]["scoring"]
    assert recorded["metrics"]["accuracy"]["value"] == 0.9 and recorded["passed"] is True
    assert recorded["data_sha256"] == data_sha and recorded["finished"] == "2026-11-23T12:00:00+0000"
    assert all(g["passed"] for g in shown["policy_check"]["gates"])

    promoted = as_json(reg("registry", "promote", "scalar", "2", "--alias", "production", "--json"))
    assert promoted["reference"] == "models:/scalar@production" and promoted["forced"] is False
    assert promoted["previous"] is None and [g["passed"] for g in promoted["gates"]] == [True, True]
    production = as_json(reg("registry", "show", "scalar@production", "--json"))
    assert production["version"] == "2" and production["aliases"] == ["production"]
    stamp = json.loads(production["tags"]["forge.promoted.production"])
    assert stamp["forced"] is False and stamp["gates"] == ["accuracy>=0.8", "ece < 0.2"]

    # --force promotes a failing version anyway, says so on stderr and records it
    forced = reg("registry", "promote", "scalar", "1", "--alias", "staging", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "warning: --force: promoted scalar/1 to @staging" in forced.stderr and "accuracy>=0.8" in forced.stderr
    staging = as_json(reg("registry", "show", "scalar@staging", "--json"))
    record = json.loads(staging["tags"]["forge.forced.staging"])
    assert record["by"] and record["at"] and record["failed"][0].startswith("accuracy>=0.8: no recorded eval")

    # the registered model is a real MLflow model: plain mlflow.pyfunc.load_model, forge's predictor inside
    import forge
    import mlflow
    import pandas as pd

    monkeypatch.setattr(forge, "load_predictor", StandInPredictor, raising=False)
    mlflow.set_tracking_uri(reg.env["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/scalar@production")
    weight = json.loads((artifact / "weight.json").read_text())["weight"]
    assert model.predict([{"x": 2.0}]) == [{"y": pytest.approx(2 * weight)}]
    frame = model.predict(pd.DataFrame({"x": [1.0, 3.0]}))
    assert isinstance(frame, pd.DataFrame) and frame["y"].tolist() == pytest.approx([weight, 3 * weight])
    configured = mlflow.pyfunc.load_model("models:/scalar/2", model_config={"predictor_options": {"note": "hi"}})
    assert configured.predict({"x": 1.0}) == [{"y": pytest.approx(weight), "note": "hi"}]

    production = registry.resolve("models:/scalar@production")
    assert (production.version, production.alias) == ("2", "production")
    assert manifest(production.path)["recipe"] == "forge-testkit:descent"

    from forge.errors import ForgeError

    with pytest.raises(ForgeError, match=r"^models:/scalar/9: no version 9 \(versions: 1, 2\)$"):
        registry.resolve("models:/scalar/9")
    with pytest.raises(ForgeError, match=r"^models:/scalar@gold: no alias 'gold' \(aliases: @production → 2, "
                                         r"@staging → 1\)$"):
        registry.resolve("models:/scalar@gold")
    assert registry.resolve("models:/scalar/latest").version == "2"


def test_bad_input_is_one_line_and_registers_nothing(reg):
    reg("run", "--recipe", "descent", "--set", "steps=2", "--no-tracking", "-o", "run", check=True)
    failed = reg.cwd / "failed"
    shutil.copytree(reg.cwd / "run", failed)
    m = manifest(failed)
    (failed / "forge.json").write_text(json.dumps({**m, "status": "failed"}))

    # one CLI call per kind of mistake (each pays for importing mlflow)
    err = one_line_error(reg("registry", "add", "failed", "--name", "x"))
    assert err == "forge: error: failed: run is failed, not completed; it has no artifact yet"
    err = one_line_error(reg("registry", "show", "models:/a/b/c"))
    assert "reference 'models:/a/b/c': malformed" in err
    err = one_line_error(reg("registry", "policy", "nobody", "--gate", "accuracy >> 3"))
    assert "--gate 'accuracy >> 3': does not parse" in err
    err = one_line_error(reg("registry", "promote", "nobody", "1", "--alias", "latest"))
    assert "--alias 'latest': reserved" in err

    # logging the model fails half-way (a file of the artifact cannot be copied): no model, no version left
    (reg.cwd / "run" / "artifact" / "dangling").symlink_to(reg.cwd / "missing-file")
    err = one_line_error(reg("registry", "add", "run", "--name", "half"))
    assert "registering failed, nothing registered" in err

    from forge import registry
    from forge.errors import ForgeError

    assert "half" not in [m["name"] for m in registry.list_models()["models"]]
    with pytest.raises(ForgeError, match=r"registry: no model named 'nobody'"):
        registry.resolve("models:/nobody/1")
    with pytest.raises(ForgeError, match=r"not a registry reference"):
        registry.resolve("runs/sft-1")
    with pytest.raises(ForgeError, match=r"names no version; use models:/x/VERSION"):
        registry.resolve("models:/x")
    with pytest.raises(ForgeError, match=r"--name 'a/b': a registered model name is"):
        registry.add(reg.cwd / "run", "a/b")
