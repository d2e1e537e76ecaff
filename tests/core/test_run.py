"""The run engine: manifests, tracking, resume after SIGKILL, Ctrl-C, failures."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "forge.json").read_text())


def losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def wait_for_steps(run_dir: Path, steps: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "metrics.jsonl").exists() and len(losses(run_dir)) >= steps:
            return
        time.sleep(0.05)
    raise AssertionError(f"run did not reach step {steps}")


def test_completed_run_manifest_and_files(forge_cli):
    data = forge_cli.cwd / "d.txt"
    data.write_text("some data\n")
    forge_cli("run", "--recipe", "descent", "--data", "d.txt", "--set", "steps=6", "-o", "r", check=True)
    run = forge_cli.cwd / "r"
    m = manifest(run)
    assert m["status"] == "completed" and m["type"] == "run"
    assert m["recipe"] == "forge-testkit:descent"
    assert m["plugins"] == {"forge-core": "0.1.0", "forge-testkit": "0.0.1"}
    assert m["config"]["steps"] == 6 and m["config"]["data"] == str(data)
    import hashlib

    assert m["data"] == [{"field": "data", "path": str(data), "sha256": hashlib.sha256(b"some data\n").hexdigest()}]
    assert m["artifact"] == {"kind": "scalar", "path": "artifact", "files": [{"path": "weight.json", "bytes": 30}]}
    assert m["metrics"]["final_weight"] == json.loads((run / "artifact" / "weight.json").read_text())["weight"]
    art = json.loads((run / "artifact" / "forge.json").read_text())
    assert art["kind"] == "scalar" and art["recipe"] == "forge-testkit:descent" and art["data"] == m["data"]
    assert [s for s, _ in losses(run)] == [1, 2, 3, 4, 5, 6]
    assert (run / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert "recipe: forge-testkit:descent" in (run / "config.yaml").read_text()


def test_tracks_to_mlflow(forge_cli, mlflow_uri):
    forge_cli("run", "--recipe", "descent", "--set", "steps=4", "-o", "r", check=True)
    m = manifest(forge_cli.cwd / "r")
    assert m["mlflow"]["tracking_uri"] == mlflow_uri
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(m["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["steps"] == "4" and run.data.params["recipe"] == "forge-testkit:descent"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(h.step for h in history) == [1, 2, 3, 4]
    assert [h.value for h in sorted(history, key=lambda h: h.step)] == [v for _, v in losses(forge_cli.cwd / "r")]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"forge.json", "metrics.png", "config.yaml"} <= names


def test_embedded_default_tracking_is_a_sqlite_file_in_the_working_directory(forge_cli):
    env = {k: v for k, v in forge_cli.env.items() if k != "MLFLOW_TRACKING_URI"}
    forge_cli.env = env
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r", check=True)
    assert manifest(forge_cli.cwd / "r")["mlflow"]["tracking_uri"] == f"sqlite:///{forge_cli.cwd / 'mlflow.db'}"
    assert (forge_cli.cwd / "mlflow.db").stat().st_size > 0


def test_sigkill_then_resume_matches_an_uninterrupted_run(forge_cli):
    args = ["--recipe", "descent", "--set", "steps=12", "--set", "checkpoint_every=3", "--no-tracking"]
    forge_cli("run", *args, "-o", "straight", check=True)
    proc = forge_cli.popen("run", *args, "--set", "step_seconds=0.15", "-o", "crashed")
    run = forge_cli.cwd / "crashed"
    wait_for_steps(run, 8)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert manifest(run)["status"] == "running"  # never says completed
    assert not (run / "artifact" / "forge.json").exists()
    # the config may not be changed while resuming; step_seconds stays as recorded
    resumed = forge_cli("run", "--resume", run, check=True)
    assert "resuming from checkpoint-6" in resumed.stderr or "resuming from checkpoint-9" in resumed.stderr
    m = manifest(run)
    assert m["status"] == "completed"
    assert m["resumes"][0]["from_checkpoint"] in ("checkpoints/checkpoint-6", "checkpoints/checkpoint-9")
    assert losses(run) == losses(forge_cli.cwd / "straight")


def test_ctrl_c_checkpoints_marks_interrupted_and_exits_130(forge_cli):
    proc = forge_cli.popen("run", "--recipe", "descent", "--set", "steps=50", "--set", "checkpoint_every=100",
                           "--set", "step_seconds=0.1", "-o", "r", "--no-tracking")
    run = forge_cli.cwd / "r"
    wait_for_steps(run, 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    m = manifest(run)
    assert m["status"] == "interrupted"
    stopped_at = max(s for s, _ in losses(run))
    assert (run / "checkpoints" / f"checkpoint-{stopped_at}" / "state.json").exists()
    assert f"forge run --resume {run.name}" in err or f"forge run --resume {run}" in err
    forge_cli("run", "--resume", "r", check=True)
    assert manifest(run)["status"] == "completed"
    assert [s for s, _ in losses(run)] == list(range(1, 51))


def test_bare_resume_takes_the_latest_unfinished_run(forge_cli):
    proc = forge_cli.popen("run", "--recipe", "descent", "--set", "steps=20", "--set", "step_seconds=0.1",
                           "--no-tracking")
    runs = forge_cli.cwd / "runs"
    deadline = time.time() + 60
    while not (runs.exists() and any(runs.glob("*/metrics.jsonl"))) and time.time() < deadline:
        time.sleep(0.05)
    run = next(runs.glob("*"))
    wait_for_steps(run, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    forge_cli("run", "--resume", check=True)
    assert manifest(run)["status"] == "completed"
    again = forge_cli("run", "--resume", run)
    assert again.returncode == 2 and "run already completed" in again.stderr


def test_resume_refuses_config_changes_and_unfinished_dir_suggests_resume(forge_cli):
    proc = forge_cli.popen("run", "--recipe", "descent", "--set", "steps=30", "--set", "step_seconds=0.1",
                           "-o", "r", "--no-tracking")
    wait_for_steps(forge_cli.cwd / "r", 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    clash = forge_cli("run", "--recipe", "descent", "-o", "r", "--no-tracking")
    assert clash.returncode == 2
    assert "holds an unfinished run (running); continue it with forge run --resume r" in clash.stderr
    change = forge_cli("run", "--resume", "r", "--set", "steps=3")
    assert change.returncode == 2 and "--resume continues a run with its own config" in change.stderr


def test_internal_bug_keeps_traceback_and_marks_failed(forge_cli):
    forge_cli.site.add("forge-buggy", "forge_buggy", """
        import forge
        from forge.config import RecipeConfig

        def train(ctx, config):
            ctx.log_metrics({"loss": 1.0}, step=1)
            return {}["missing"]

        @forge.hookimpl
        def register_recipes(register):
            register(forge.Recipe(name="buggy", config=RecipeConfig, train=train))
        """)
    result = forge_cli("run", "--recipe", "buggy", "-o", "r", "--no-tracking")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "KeyError: 'missing'" in result.stderr
    m = manifest(forge_cli.cwd / "r")
    assert m["status"] == "failed" and m["error"] == "KeyError: 'missing'"


def test_user_error_inside_recipe_is_one_line_and_marks_failed(forge_cli):
    forge_cli.site.add("forge-picky", "forge_picky", """
        import forge
        from forge.config import RecipeConfig
        from forge.errors import DataError

        def train(ctx, config):
            raise DataError("data.jsonl:7: field 'text' is empty")

        @forge.hookimpl
        def register_recipes(register):
            register(forge.Recipe(name="picky", config=RecipeConfig, train=train))
        """)
    result = forge_cli("run", "--recipe", "picky", "-o", "r", "--no-tracking")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "forge: error: data.jsonl:7: field 'text' is empty"
    assert "Traceback" not in result.stderr
    assert manifest(forge_cli.cwd / "r")["status"] == "failed"


def test_dry_run_prints_resolved_config_and_writes_nothing(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--set", "steps=7", "--dry-run", check=True)
    assert "recipe: forge-testkit:descent" in result.stdout and "steps: 7" in result.stdout
    assert "seed: 42" in result.stdout
    assert list(forge_cli.cwd.iterdir()) == []


def test_unusable_tracking_uri_is_one_line_and_marks_failed(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r",
                       env={"MLFLOW_TRACKING_URI": "nosuchscheme://nowhere"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("forge: error: MLflow tracking to nosuchscheme://nowhere failed: ")
    assert last.endswith("(set MLFLOW_TRACKING_URI, or pass --no-tracking)")
    assert "Traceback" not in result.stderr
    assert manifest(forge_cli.cwd / "r")["status"] == "failed"


def test_a_run_directory_is_locked_by_the_process_running_it(forge_cli):
    """Two ``--resume`` of one run at once: the second is refused in one line while the first trains."""
    args = ["--recipe", "descent", "--set", "steps=40", "--set", "step_seconds=0.1", "--no-tracking"]
    first = forge_cli.popen("run", *args, "-o", "r")
    run = forge_cli.cwd / "r"
    wait_for_steps(run, 3)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    resumed = forge_cli.popen("run", "--resume", "r")
    deadline = time.time() + 60
    while manifest(run).get("pid") in (None, first.pid) and time.time() < deadline:
        time.sleep(0.05)
    second = forge_cli("run", "--resume", "r")
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == f"forge: error: r: run is in use by pid {resumed.pid} on " \
        f"{manifest(run)['host']}; wait for it to end (or stop it) first"
    resumed.send_signal(signal.SIGINT)
    resumed.communicate(timeout=60)
    assert manifest(run)["status"] == "interrupted"


def test_a_stale_pid_in_the_manifest_does_not_block_resume(forge_cli):
    """A crashed run's pid may belong to another live process now; only the lock says whether the run is alive."""
    import os
    import socket

    proc = forge_cli.popen("run", "--recipe", "descent", "--set", "steps=30", "--set", "step_seconds=0.1",
                           "-o", "r", "--no-tracking")
    run = forge_cli.cwd / "r"
    wait_for_steps(run, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    m = manifest(run)
    m.update(pid=os.getpid(), host=socket.gethostname())  # this test process: alive, and not the run's
    (run / "forge.json").write_text(json.dumps(m))
    forge_cli("run", "--resume", "r", check=True)
    assert manifest(run)["status"] == "completed"


def test_first_runs_in_one_folder_share_a_new_mlflow_store_safely(forge_cli):
    """Creating the embedded sqlite store runs migrations; concurrent first runs must not corrupt it."""
    env = {k: v for k, v in forge_cli.env.items() if k != "MLFLOW_TRACKING_URI"}
    forge_cli.env = env
    procs = [forge_cli.popen("run", "--recipe", "descent", "--set", "steps=2", "-o", f"r{i}") for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "later", check=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{forge_cli.cwd / 'mlflow.db'}")
    for name in ("r0", "r1", "r2", "later"):
        assert client.get_run(manifest(forge_cli.cwd / name)["mlflow"]["run_id"]).info.status == "FINISHED"


def test_check_loss_stops_naming_the_last_good_checkpoint_or_says_once(tmp_path, capsys):
    import pytest
    from forge.errors import TrainingDiverged
    from forge.run.context import RunContext

    ctx = RunContext(run_dir=tmp_path, recipe="testkit:descent")
    assert ctx.check_loss(0.5, 1)
    with pytest.raises(TrainingDiverged, match=r"at step 2: run stopped .*no good checkpoint was written before it"):
        ctx.check_loss(float("nan"), 2)
    ctx.save_checkpoint(3, lambda directory: None)
    with pytest.raises(TrainingDiverged, match=r"loss became inf at epoch 4: .*last good checkpoint .*checkpoint-3"):
        ctx.check_loss(float("inf"), 4, unit="epoch")
    ctx.save_checkpoint(5, lambda directory: None)
    with pytest.raises(TrainingDiverged, match=r"at step 6: .*last good checkpoint .*checkpoint-3;"):
        ctx.check_loss(float("nan"), 6, produced_by=5)  # checkpoint-5's weights gave the NaN: set aside
    assert sorted(p.name for p in ctx.checkpoint_dir.iterdir()) == ["checkpoint-3", "diverged-checkpoint-5"]
    assert not ctx.check_loss(float("nan"), 5, "continue") and not ctx.check_loss(float("-inf"), 6, "continue")
    ctx.close()
    said = [line for line in capsys.readouterr().err.splitlines() if "nan_policy: continue" in line]
    assert len(said) == 1 and "training loss is nan at step 5" in said[0]
    assert TrainingDiverged("x").exit_code == 2


def test_a_manifest_pointing_outside_its_run_is_refused(forge_cli, tmp_path):
    from forge.artifacts import Artifact
    from forge.errors import ForgeError

    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r", check=True)
    run = forge_cli.cwd / "r"
    assert Artifact.load(run).kind == "scalar"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "forge.json").write_text(json.dumps({"kind": "scalar"}))
    for pointer in (str(outside), "../../elsewhere", "artifact/../../elsewhere"):
        m = manifest(run)
        m["artifact"]["path"] = pointer
        (run / "forge.json").write_text(json.dumps(m))
        try:
            Artifact.load(run)
        except ForgeError as exc:
            assert "points outside" in str(exc) and pointer in str(exc)
        else:
            raise AssertionError(f"followed {pointer}")
    result = forge_cli("export", "r", "--format", "text")
    assert result.returncode == 2 and "points outside" in result.stderr and "Traceback" not in result.stderr
