"""Multi-process and multi-node launch through torchrun (forge run --nproc-per-node / --nnodes), with the core's
test recipe: who writes the run directory, what the manifest records, failures on any rank."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "forge.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_options_are_checked_before_anything_starts(forge_cli):
    cases = [
        (["--nnodes", "2", "-o", "r"], "--nnodes 2: say where the nodes meet: --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:1"], "--nnodes 2: name the run directory with --output-dir"),
        (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h", "-o", "r"], "--node-rank 2: must be in 0..1"),
        (["--rdzv-endpoint", "nohostport", "-o", "r"], "--rdzv-endpoint nohostport: expected HOST:PORT"),
        (["--rdzv-endpoint", "h:1", "--master-addr", "h", "-o", "r"], "give one"),
        (["--master-port", "1234", "-o", "r"], "--master-port: needs --master-addr"),
    ]
    for extra, message in cases:
        result = forge_cli("run", "--recipe", "descent", "--no-tracking", *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith("forge: error: "), result.stderr
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (forge_cli.cwd / "r").exists()


def test_two_static_nodes_on_localhost_one_run_directory_written_by_rank_0(forge_cli):
    port = str(free_port())
    args = ["run", "--recipe", "descent", "--set", "steps=6", "--no-tracking", "-o", "multi", "--nnodes", "2",
            "--master-addr", "127.0.0.1", "--master-port", port]
    nodes = [forge_cli.popen(*args, "--node-rank", str(r)) for r in (0, 1)]
    outs = [p.communicate(timeout=300) for p in nodes]
    for r, (p, (_, err)) in enumerate(zip(nodes, outs, strict=True)):
        assert p.returncode == 0, err
        assert f"(node {r} of 2): torchrun --nproc-per-node=1 --nnodes=2 --node-rank={r} --master-addr=127.0.0.1" \
            in err
    m = manifest(forge_cli.cwd / "multi")
    assert m["status"] == "completed" and m["world_size"] == 2
    assert m["distributed"]["nnodes"] == 2 and m["distributed"]["nproc_per_node"] == 1
    assert m["distributed"]["master_port"] == port
    forge_cli("run", "--recipe", "descent", "--set", "steps=6", "--no-tracking", "-o", "one", check=True)
    assert (forge_cli.cwd / "multi" / "metrics.jsonl").read_text().count("loss") == 6
    assert json.loads((forge_cli.cwd / "multi" / "artifact" / "weight.json").read_text()) == \
        json.loads((forge_cli.cwd / "one" / "artifact" / "weight.json").read_text())


def test_two_nodes_stopped_half_way_resume_as_two_nodes_to_the_uninterrupted_result(forge_cli):
    """Ctrl-C on both nodes: the workers checkpoint and stop (interrupted, exit 130); the same two commands with
    --resume continue from rank 0's last checkpoint and end where an uninterrupted run ends."""
    config = ["--set", "steps=12", "--set", "checkpoint_every=2", "--no-tracking"]

    def two_nodes(*run: str) -> list[tuple[subprocess.Popen, str]]:
        port = str(free_port())
        nodes = [forge_cli.popen("run", *run, "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", port,
                                 "--node-rank", str(r)) for r in (0, 1)]
        return nodes

    nodes = two_nodes("--recipe", "descent", *config, "--set", "step_seconds=0.2", "-o", "multi")
    checkpoints = forge_cli.cwd / "multi" / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints / "checkpoint-4").is_dir() and time.time() < deadline:
        assert all(p.poll() is None for p in nodes), [p.communicate() for p in nodes]
        time.sleep(0.05)
    for p in nodes:
        p.send_signal(signal.SIGINT)
    outs = [p.communicate(timeout=120) for p in nodes]
    assert [p.returncode for p in nodes] == [130, 130], outs
    m = manifest(forge_cli.cwd / "multi")
    assert m["status"] == "interrupted", m
    stopped_at = max(int(c.name.split("-")[1]) for c in checkpoints.glob("checkpoint-*"))
    assert 4 <= stopped_at < 12
    assert "continue with: forge run --resume" in outs[0][1]
    assert not any("Traceback" in err for _, err in outs), outs  # torchrun too stops quietly on the signal

    nodes = two_nodes("--resume", "multi", "--no-tracking")
    outs = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs
    assert f"resuming from checkpoint-{stopped_at}" in outs[0][1]
    m = manifest(forge_cli.cwd / "multi")
    assert m["status"] == "completed" and m["world_size"] == 2 and len(m["resumes"]) == 1
    steps = [json.loads(x)["step"] for x in (forge_cli.cwd / "multi" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # the steps after the checkpoint were dropped and run again, once
    forge_cli("run", "--recipe", "descent", *config, "-o", "one", check=True)
    assert json.loads((forge_cli.cwd / "multi" / "artifact" / "weight.json").read_text()) == \
        json.loads((forge_cli.cwd / "one" / "artifact" / "weight.json").read_text())


def test_a_failed_follower_rank_marks_the_run_failed(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--set", "steps=40", "--set", "step_seconds=0.25",
                       "--set", "fail_on_rank=1", "--no-tracking", "-o", "r", "--nproc-per-node", "2")
    assert result.returncode not in (0, 130), result.stderr
    assert "rank 1 failed on purpose" in result.stderr
    m = manifest(forge_cli.cwd / "r")
    assert m["status"] == "failed" and "a worker process failed (torchrun exit" in m["error"]
    assert not (forge_cli.cwd / "r" / "artifact" / "forge.json").exists()
