"""``forge data lineage``: model ← run ← datasets, from a run directory, an artifact and a registry reference (a real
sqlite store, the test plugin's ``descent`` recipe); and the run's data in MLflow's dataset tracking."""

from __future__ import annotations

import hashlib
import json


def test_lineage_of_a_run_an_artifact_and_a_registered_version(forge_cli, tmp_path, monkeypatch):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    forge_cli.env["MLFLOW_TRACKING_URI"] = store
    forge_cli.env["FORGE_REGISTRY_CACHE"] = str(tmp_path / "cache")
    (forge_cli.cwd / "d.txt").write_text("some data\n")
    forge_cli("run", "--recipe", "descent", "--data", "d.txt", "--set", "steps=2", "-o", "run", check=True)
    sha = hashlib.sha256(b"some data\n").hexdigest()
    run = forge_cli.cwd / "run"
    run_id = json.loads((run / "forge.json").read_text())["mlflow"]["run_id"]

    text = forge_cli("data", "lineage", "run", check=True).stdout.splitlines()
    assert text[0] == f"artifact {run / 'artifact'} (scalar)"
    assert text[1].startswith(f"  ← run {run} (") and f"mlflow run {run_id}" in text[1]
    assert text[2] == f"    ← data {forge_cli.cwd / 'd.txt'} (sha256 {sha[:12]})"

    forge_cli("registry", "add", "run", "--name", "lin", check=True)
    info = json.loads(forge_cli("data", "lineage", "models:/lin/1", "--json", check=True).stdout)
    assert info["registry"] == {"name": "lin", "version": "1", "alias": None}
    assert info["run"]["path"] == str(run) and info["run"]["mlflow_run_id"] == run_id
    assert info["datasets"] == [{"field": "data", "source": str(forge_cli.cwd / "d.txt"), "sha256": sha}]

    import mlflow

    mlflow.set_tracking_uri(store)
    [dataset_input] = mlflow.get_run(run_id).inputs.dataset_inputs
    assert dataset_input.dataset.name == "d.txt" and dataset_input.dataset.digest == sha[:32]
    assert {t.key: t.value for t in dataset_input.tags}["forge.sha256"] == sha

    missing = forge_cli("data", "lineage", "models:/nope/1")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
