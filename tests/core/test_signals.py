"""SIGTERM is honoured in every phase (issue 20): set-up phases with no step to stop at end the run at once, a
stopped ``forge export`` removes its staging directory, and one killed outright has it removed by the next export
(its lock is free). Serving flags and the warning for a server reachable beyond this machine without a key."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_during_a_setup_phase_stops_the_run_at_once(forge_cli):
    """A recipe's data checks / model loading (``ctx.stop_at_once()``) stop on the first SIGTERM, not after."""
    proc = forge_cli.popen("run", "--recipe", "descent", "--set", "setup_seconds=60", "--set", "steps=3", "-o", "r",
                           "--no-tracking")
    log = forge_cli.cwd / "r" / "run.log"
    wait_for(lambda: log.exists() and "setting up" in log.read_text(), what="the set-up phase")
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - start < 10
    assert "SIGTERM: stopping now" in err and "Traceback" not in err
    assert json.loads((forge_cli.cwd / "r" / "forge.json").read_text())["status"] == "interrupted"


def staging_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob(".text.staging-*")) if parent.exists() else []


def test_a_stopped_or_killed_export_leaves_nothing_behind(forge_cli):
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r", "--no-tracking", check=True)
    exports = forge_cli.cwd / "r" / "exports"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = forge_cli.popen("export", "r", "--format", "text", "--set", "seconds=60")
        wait_for(lambda: any((d / "weight.txt").exists() for d in staging_dirs(exports)), what="the export")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert not (exports / "text").exists()
        if sig == signal.SIGTERM:
            assert proc.returncode == 130 and "Traceback" not in err
            assert staging_dirs(exports) == []
    assert len(staging_dirs(exports)) == 1  # SIGKILL: nothing could run; the next export cleans up
    time.sleep(1)
    forge_cli("export", "r", "--format", "text", check=True)
    assert staging_dirs(exports) == [] and (exports / "text" / "forge.json").is_file()


def test_a_staging_directory_in_use_is_left_alone(tmp_path):
    from forge.artifacts import remove_abandoned_staging, staged_directory

    target = tmp_path / "out"
    with staged_directory(target) as staging:
        (staging / "f").write_text("x")
        old = time.time() - 60
        os.utime(staging, (old, old))
        assert remove_abandoned_staging(target) == []  # locked by this process: in use
        assert staging.exists()
    assert (target / "f").read_text() == "x"


@pytest.mark.parametrize("host, warned", [
    ("127.0.0.1", False), ("127.0.0.2", False), ("localhost", False), ("::1", False), ("[::1]", False),
    ("0.0.0.0", True), ("::", True), ("192.168.1.20", True), ("myhost.example", True),
])
def test_a_server_beyond_loopback_without_a_key_is_warned_about(host, warned):
    from forge.serving.runner import exposure_warning

    warning = exposure_warning(host, None)
    assert (warning is not None) == warned
    if warned:
        assert warning.startswith(f"warning: serving on {host} without an API key") and "FORGE_API_KEY" in warning
    assert exposure_warning(host, "k3y") is None


def test_serve_flags_are_checked_before_anything_loads(forge_cli):
    for flags, line in [
        (["--port", "70000"], "forge: error: --port 70000: port: Input should be less than or equal to 65535 "
                              "(got 70000)"),
        (["--timeout-s", "0"], "forge: error: --timeout-s 0.0: timeout_s: Input should be greater than 0 (got 0.0)"),
    ]:
        result = forge_cli("serve", "nowhere", *flags)
        assert result.returncode == 2 and result.stderr.strip() == line, result.stderr
    result = forge_cli("serve", "nowhere", "--host", "0.0.0.0")  # refused before binding: nothing is exposed
    first, *rest = result.stderr.strip().splitlines()
    assert first.startswith("warning: serving on 0.0.0.0 without an API key")
    assert result.returncode == 2 and len(rest) == 1 and rest[0].startswith("forge: error: ")
