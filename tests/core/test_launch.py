"""Multi-process and multi-node launch through torchrun (forge run --nproc-per-node / --nnodes), with the core's
test recipe: who writes the run directory, what the manifest records, failures on any rank."""

from __future__ import annotations

import json
import socket
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


def test_a_failed_follower_rank_marks_the_run_failed(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--set", "steps=40", "--set", "step_seconds=0.25",
                       "--set", "fail_on_rank=1", "--no-tracking", "-o", "r", "--nproc-per-node", "2")
    assert result.returncode not in (0, 130), result.stderr
    assert "rank 1 failed on purpose" in result.stderr
    m = manifest(forge_cli.cwd / "r")
    assert m["status"] == "failed" and "a worker process failed (torchrun exit" in m["error"]
    assert not (forge_cli.cwd / "r" / "artifact" / "forge.json").exists()
