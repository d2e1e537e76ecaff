"""``forge eval`` through the real CLI with a fixture evaluator (tests/fixture_plugins/forge_evalkit.py) on artifacts
of the testkit's ``descent`` recipe: storage, intervals, exit codes 0/2/3/130, baselines, MLflow, the run manifest,
references, and a recipe's ``eval_suites``."""

from __future__ import annotations

import json
import signal
import sys
import time
import types
from pathlib import Path

import pytest


@pytest.fixture
def forge_cli(forge_cli):
    forge_cli.site.add("forge-evalkit", "forge_evalkit", entry_point="evalkit")
    return forge_cli


def _targets(path: Path, values: list[float]) -> Path:
    path.write_text("".join(json.dumps({"target": v}) + "\n" for v in values))
    return path


def _evals(directory: Path) -> list[Path]:
    root = directory / "evals"
    return sorted(root.iterdir()) if root.exists() else []


def _descent(forge_cli, out: str, *extra: str, tracking: bool = False) -> Path:
    forge_cli("run", "--recipe", "descent", "--set", "steps=30", "--set", "noise=0", *extra, "-o", out,
              *([] if tracking else ["--no-tracking"]), check=True)
    return forge_cli.cwd / out


def test_eval_keeps_the_result_logs_it_to_the_run_and_lists_it(forge_cli, mlflow_uri):
    run = _descent(forge_cli, "r", tracking=True)
    _targets(forge_cli.cwd / "t.jsonl", [2.5, 3.0, 3.2, 4.5, 2.9, 3.1])
    result = forge_cli("eval", "r", "--suite", "closeness", "--data", "t.jsonl", "--set", "tol=0.5",
                       "--gate", "within>=0.5", "--gate", "abs_error<1", "--json", check=True)
    printed = json.loads(result.stdout)  # stdout holds eval.json and nothing else
    [kept] = _evals(run / "artifact")
    assert kept.name.startswith("closeness-") and sorted(p.name for p in kept.iterdir()) == [
        "errors.svg", "eval.json", "records.jsonl", "started"]
    assert json.loads((kept / "eval.json").read_text()) == printed
    assert printed["suite"] == "closeness" and printed["artifact_kind"] == "scalar" and printed["reference"] == "r"
    assert printed["artifact"] == str((run / "artifact").resolve())
    assert printed["data"] == str(forge_cli.cwd / "t.jsonl") and len(printed["data_sha256"]) == 64
    assert printed["options"] == {"tol": 0.5} and printed["seed"] == 0 and printed["plots"] == ["errors.svg"]
    metrics = printed["metrics"]
    assert metrics["within"]["value"] == pytest.approx(5 / 6)
    assert metrics["abs_error"]["low"] < metrics["abs_error"]["value"] < metrics["abs_error"]["high"]
    assert metrics["worst"]["low"] is None and metrics["worst"]["high"] is None  # not a mean: no interval
    assert printed["passed"] is True and [g["passed"] for g in printed["gates"]] == [True, True]
    assert printed["versions"]["forge-evalkit"] == "0.0.1" and printed["baseline"] is None
    records = [json.loads(line) for line in (kept / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and records[0]["input"] == 2.5
    # the same MLflow run as the training, metrics prefixed eval/
    manifest = json.loads((run / "forge.json").read_text())
    run_id = manifest["mlflow"]["run_id"]
    assert printed["mlflow_run_id"] == run_id
    import mlflow

    logged = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).data.metrics
    assert logged["eval/within"] == pytest.approx(5 / 6)
    assert logged["eval/abs_error_low"] == pytest.approx(metrics["abs_error"]["low"])
    assert "eval/worst" in logged and "eval/worst_low" not in logged and "loss" in logged
    # listed in the run manifest; read back through the API
    assert manifest["status"] == "completed"
    [listed] = manifest["evals"]
    assert listed["suite"] == "closeness" and listed["path"] == f"artifact/evals/{kept.name}"
    assert listed["passed"] is True and listed["metrics"]["within"] == pytest.approx(5 / 6)
    from forge.evaluation import stored_results

    assert stored_results(run) == stored_results(run / "artifact") == [printed]
    # the human table: every metric with its interval, and the gates
    table = forge_cli("eval", "r", "--suite", "closeness", "--data", "t.jsonl", check=True).stdout
    assert "metric" in table and "95% interval" in table and "within" in table and len(_evals(run / "artifact")) == 2


def test_bad_input_is_one_line_exit_2_and_writes_nothing(forge_cli):
    run = _descent(forge_cli, "r")
    _targets(forge_cli.cwd / "t.jsonl", [3.0, 3.1])
    (forge_cli.cwd / "bad.jsonl").write_text('{"target": 1}\n{"goal": 2}\n')
    cases = {
        ("--suite", "nope", "--data", "t.jsonl"):
            "--suite nope: unknown suite; installed: closeness, digits; for a scalar artifact: closeness",
        ("--suite", "digits"): "r: suite digits does not take scalar artifacts (it takes scalar-text); suites "
                               "for scalar: closeness",
        ("--suite", "closeness", "--data", "missing.jsonl"): "--data missing.jsonl: file not found",
        ("--suite", "closeness", "--data", "bad.jsonl"): "bad.jsonl:2: expected {\"target\": number}",
        ("--suite", "closeness", "--data", "t.jsonl", "--set", "tol"): "--set tol: expected key=value",
        ("--suite", "closeness", "--data", "t.jsonl", "--set", "tol=wide"): "--set tol=wide: not a number",
        ("--suite", "closeness", "--data", "t.jsonl", "--gate", "within>>1"): "--gate 'within>>1': does not parse",
        ("--suite", "closeness", "--data", "t.jsonl", "--gate", "acc>=0.9"):
            "--gate 'acc>=0.9': unknown metric 'acc' (this suite gives: abs_error, within, worst)",
        ("--suite", "closeness", "--data", "t.jsonl", "--gate", "within>=baseline"):
            "--gate 'within>=baseline': compares with the baseline, but no --baseline was given",
        ("--suite", "closeness", "--data", "t.jsonl", "--baseline", "elsewhere"): "elsewhere: no such directory",
    }
    for args, message in cases.items():
        result = forge_cli("eval", "r", *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("forge: error: ") and message in lines[-1], (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
        assert not (run / "artifact" / "evals").exists() or not any((run / "artifact" / "evals").iterdir()), args
    unfinished = forge_cli("eval", "models:/clf/1", "--suite", "closeness")
    assert unfinished.returncode == 2 and len(unfinished.stderr.strip().splitlines()) == 1


def test_a_failed_gate_exits_3_and_keeps_the_result(forge_cli):
    run = _descent(forge_cli, "r")
    _targets(forge_cli.cwd / "t.jsonl", [1.0, 3.0, 5.0])
    result = forge_cli("eval", "r", "--suite", "closeness", "--data", "t.jsonl", "--gate", "within>=0.9",
                       "--gate", "worst<=10", "--json")
    assert result.returncode == 3
    assert "forge: error: gate failed: within>=0.9 (within = 0.3333, bound 0.9)" in result.stderr
    assert "worst<=10" not in result.stderr.split("forge: error:", 1)[1]  # only the failed gate is an error
    printed = json.loads(result.stdout)
    assert printed["passed"] is False and [g["passed"] for g in printed["gates"]] == [False, True]
    [kept] = _evals(run / "artifact")
    assert json.loads((kept / "eval.json").read_text())["passed"] is False
    assert json.loads((run / "forge.json").read_text())["evals"][0]["passed"] is False


def test_invalid_evaluator_result_keeps_nothing(forge_cli):
    run = _descent(forge_cli, "r")
    _targets(forge_cli.cwd / "t.jsonl", [3.0])
    result = forge_cli("eval", "r", "--suite", "closeness", "--data", "t.jsonl", "--set", "bad=true")
    assert result.returncode == 1 and "returned dict, not EvalResult" in result.stderr
    assert _evals(run / "artifact") == []


def test_ctrl_c_exits_130_and_leaves_no_result(forge_cli):
    run = _descent(forge_cli, "r")
    _targets(forge_cli.cwd / "t.jsonl", [3.0] * 200)
    proc = forge_cli.popen("eval", "r", "--suite", "closeness", "--data", "t.jsonl", "--set", "pause=0.05")
    deadline = time.time() + 60
    while not list((run / "artifact").glob("evals/.closeness-*/started")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGINT: stopping the eval" in err and "forge: eval interrupted; nothing was kept" in err
    assert not list((run / "artifact").rglob("eval.json"))
    assert _evals(run / "artifact") == [] and not list((run / "artifact" / "evals").iterdir())
    assert "evals" not in json.loads((run / "forge.json").read_text())


def test_baseline_is_reused_or_evaluated_and_compared(forge_cli):
    new = _descent(forge_cli, "new")
    old = _descent(forge_cli, "old", "--set", "steps=2")  # stopped early: far from the targets
    _targets(forge_cli.cwd / "t.jsonl", [2.9, 3.0, 3.1, 3.0, 2.95, 3.05])
    # no stored result of the baseline: it is evaluated (and kept with it)
    first = forge_cli("eval", "new", "--suite", "closeness", "--data", "t.jsonl", "--baseline", "old",
                      "--gate", "abs_error<=baseline-0.5")
    assert first.returncode == 0, first.stderr
    assert "baseline old: no stored closeness eval" in first.stderr
    [old_eval] = _evals(old / "artifact")
    assert "baseline old" in first.stdout and "outside interval" in first.stdout
    table = first.stdout.split("baseline old", 1)[1]
    row = next(line for line in table.splitlines() if line.startswith("abs_error "))
    assert row.split()[-1] == "yes"  # far apart, intervals do not overlap
    assert next(line for line in table.splitlines() if line.startswith("worst ")).split()[-1] == "n/a"
    [new_eval] = _evals(new / "artifact")
    stored = json.loads((new_eval / "eval.json").read_text())
    baseline = stored["baseline"]
    assert baseline["reference"] == "old" and baseline["reused"] is False and baseline["path"] == str(old_eval)
    assert baseline["metrics"] == json.loads((old_eval / "eval.json").read_text())["metrics"]
    delta = next(r for r in baseline["comparison"] if r["metric"] == "abs_error")
    assert delta["delta"] == pytest.approx(stored["metrics"]["abs_error"]["value"] - baseline["metrics"][
        "abs_error"]["value"]) and delta["outside_interval"] is True
    assert stored["gates"][0]["bound"] == pytest.approx(baseline["metrics"]["abs_error"]["value"] - 0.5)
    # the same suite, data and options again: the stored result is reused, nothing new under old/
    again = forge_cli("eval", "new", "--suite", "closeness", "--data", "t.jsonl", "--baseline", "old", "--json",
                      check=True)
    assert "reusing its closeness eval" in again.stderr and json.loads(again.stdout)["baseline"]["reused"] is True
    assert len(_evals(old / "artifact")) == 1
    # other options: evaluated anew; a gate against the baseline that fails exits 3
    worse = forge_cli("eval", "old", "--suite", "closeness", "--data", "t.jsonl", "--set", "tol=0.1",
                      "--baseline", "new", "--gate", "within>=baseline-0.1")
    assert worse.returncode == 3 and "gate failed: within>=baseline-0.1" in worse.stderr
    assert len(_evals(new / "artifact")) == 3  # two of its own, one as the baseline with tol=0.1


def test_export_references_and_the_run_that_made_them(forge_cli, mlflow_uri):
    run = _descent(forge_cli, "r", tracking=True)
    forge_cli("export", "r", "--format", "text", check=True)
    # the run's artifact is scalar; the digits suite takes its scalar-text export
    result = forge_cli("eval", "r", "--suite", "digits", "--json", check=True)
    assert "the run's artifact is a scalar; using its export r/exports/text (scalar-text)" in result.stderr
    printed = json.loads(result.stdout)
    assert printed["artifact_kind"] == "scalar-text" and printed["data"] is None
    assert printed["metrics"]["weight"]["high"] - printed["metrics"]["weight"]["low"] == pytest.approx(1.0)
    [kept] = _evals(run / "exports" / "text")
    manifest = json.loads((run / "forge.json").read_text())
    assert manifest["evals"][0]["path"] == f"exports/text/evals/{kept.name}"
    assert printed["mlflow_run_id"] == manifest["mlflow"]["run_id"]  # the run that made the parent artifact
    # the export directory named directly, and an artifact directory copied away from any run
    forge_cli("eval", "r/exports/text", "--suite", "digits", check=True)
    import shutil

    shutil.copytree(run / "exports" / "text", forge_cli.cwd / "loose", ignore=shutil.ignore_patterns("evals"))
    manifest_path = forge_cli.cwd / "loose" / "forge.json"
    loose = json.loads(manifest_path.read_text())
    loose["parent"]["path"] = "/nowhere"
    manifest_path.write_text(json.dumps(loose))
    alone = forge_cli("eval", "loose", "--suite", "digits", "--json", check=True)
    assert json.loads(alone.stdout)["mlflow_run_id"] is None
    assert "not logged to MLflow: loose was not made by a forge run here" in alone.stderr
    # export and serve take the same references
    exported = forge_cli("export", "r/artifact", "--format", "text", "-o", "again", check=True)
    assert (forge_cli.cwd / "again" / "weight.txt").exists(), exported.stderr
    assert forge_cli("serve", "models:/clf@production").returncode == 2


def test_run_eval_suites_evaluate_at_the_end(forge_cli):
    _targets(forge_cli.cwd / "t.jsonl", [3.0, 3.1, 2.9])
    (forge_cli.cwd / "c.yaml").write_text(
        "recipe: descent\nsteps: 30\nnoise: 0\neval_suites:\n"
        "  - suite: closeness\n    data: t.jsonl\n    options: {tol: 0.5}\n    gates: ['within>=0.5']\n"
        "  - {suite: closeness, data: t.jsonl, gates: ['worst<0.001']}\n")
    result = forge_cli("run", "-c", "c.yaml", "-o", "r", "--no-tracking")
    assert result.returncode == 3, result.stderr
    manifest = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())
    assert manifest["status"] == "completed"
    assert [e["passed"] for e in manifest["evals"]] == [True, False]
    assert "gate worst<0.001: FAILED" in result.stderr
    assert len(_evals(forge_cli.cwd / "r" / "artifact")) == 2
    # planning refuses an unknown suite, with where it came from; nothing is written
    (forge_cli.cwd / "bad.yaml").write_text("recipe: descent\neval_suites: [nope]\n")
    bad = forge_cli("run", "-c", "bad.yaml", "-o", "b", "--no-tracking")
    assert bad.returncode == 2 and "bad.yaml:2: eval_suites[0].suite: unknown suite 'nope'" in bad.stderr
    assert not (forge_cli.cwd / "b").exists()
    gate = forge_cli("run", "-c", "bad.yaml", "-o", "b", "--no-tracking", "--set",
                     "eval_suites=[{suite: closeness, gates: [within>>2]}]")
    assert gate.returncode == 2 and "within>>2" in gate.stderr and "does not parse" in gate.stderr


def test_registry_references_go_through_forge_registry(tmp_path, monkeypatch, mlflow_uri):
    """``models:/`` references resolve through forge.registry.resolve and results are recorded with record_eval
    (a stand-in module here: the registry itself has its own tests)."""
    from forge.artifacts import ArtifactResult, write_artifact_manifest
    from forge.contributions import Evaluator, Registered
    from forge.eval_engine import EvalOptions, Hooks, evaluate, prepare
    from forge.evaluation import EvalResult
    from forge.plugins import PluginSet
    from forge.references import open_artifact

    model = tmp_path / "store" / "files"
    model.mkdir(parents=True)
    write_artifact_manifest(model, ArtifactResult(kind="scalar"), {})
    recorded = []
    fake = types.ModuleType("forge.registry")
    fake.resolve = lambda ref: types.SimpleNamespace(path=model, name="clf", version="3", alias=None)
    fake.record_eval = lambda resolved, data: recorded.append((resolved.version, data["suite"]))
    monkeypatch.setitem(sys.modules, "forge.registry", fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # the stand-in version is not in it: nothing logged
    assert open_artifact("models:/clf/3").path == model
    evaluator = Evaluator(name="const", accepts=("scalar",),
                          evaluate=lambda artifact, request: EvalResult(metrics={"m": 1.0}))
    plugins = PluginSet([], {"evaluators": [Registered("kit", evaluator)]})
    prepared = prepare(EvalOptions(reference="models:/clf/3", suite="const"), plugins)
    outcome = evaluate(prepared, Hooks(log=lambda m: None), plugins)
    assert outcome.path.parent == tmp_path / "evals" / "clf-v3" and not (model / "evals").exists()
    assert recorded == [("3", "const")] and outcome.eval_json["reference"] == "models:/clf/3"
    assert outcome.eval_json["mlflow_run_id"] is None


def test_an_exports_parent_is_followed_only_when_sealed_or_its_own_run(tmp_path):
    """Issue 20: a manifest's ``parent`` (where eval finds the held-out split and the producing run) is data anyone
    who can write the export can edit; it is followed inside the run that holds the export, or sealed by this user."""
    from forge import seals
    from forge.artifacts import parent_directory

    run = tmp_path / "run"
    (run / "exports" / "text").mkdir(parents=True)
    elsewhere = tmp_path / "away"
    elsewhere.mkdir()
    assert parent_directory(run / "exports" / "text", {"parent": {"path": str(run)}}) == run.resolve()
    unsealed = {"parent": {"path": str(run)}}
    assert parent_directory(elsewhere, unsealed) is None  # a sibling export without a seal: not followed
    sealed = {"parent": {"path": str(run), "seal": seals.seal(run, "parent")}}
    assert parent_directory(elsewhere, sealed) == run.resolve()
    edited = {"parent": {"path": str(tmp_path), "seal": sealed["parent"]["seal"]}}  # seal copied onto another path
    assert parent_directory(elsewhere, edited) is None
    assert parent_directory(run / "exports" / "text", {"parent": {"path": "/"}}) is None  # not any ancestor
    wrong_purpose = {"parent": {"path": str(run), "seal": seals.seal(run, "base_model")}}
    assert parent_directory(elsewhere, wrong_purpose) is None
    assert parent_directory(elsewhere, {"parent": {"path": "a\0b", "seal": {"path": "a\0b", "hmac": "0"}}}) is None
