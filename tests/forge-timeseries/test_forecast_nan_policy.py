"""lstm-forecast: a training loss that becomes NaN/inf fails the run at that epoch (nan_policy: stop), or is
skipped batch by batch (nan_policy: continue: the best validation weights are kept)."""

from __future__ import annotations

import json

from series_files import write_series

FAST = ["--set", "max_epochs=4", "--set", "lstm_units=[16]", "--set", "dense_units=8", "--set", "window=12",
        "--set", "horizon=6", "--set", "checkpoint_every=1", "--set", "learning_rate=1e30",
        "--set", "baselines=[]", "--no-tracking"]


def test_lstm_nan_loss_stops_failed(forge_cli):
    write_series(forge_cli.cwd / "s.csv")
    result = forge_cli("run", "--recipe", "lstm-forecast", "--data", "s.csv", *FAST, "-o", "r")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("forge: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "training loss became" in errors[0] and " at epoch 1: " in errors[0]
    m = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())
    assert m["status"] == "failed" and "nan_policy: stop" in m["error"]
    assert not (forge_cli.cwd / "r" / "artifact").exists()


def test_lstm_nan_policy_continue_completes(forge_cli):
    write_series(forge_cli.cwd / "s.csv")
    result = forge_cli("run", "--recipe", "lstm-forecast", "--data", "s.csv", *FAST, "--set", "nan_policy=continue",
                       "-o", "r")
    assert result.returncode == 0, result.stderr
    assert "going on (nan_policy: continue)" in result.stderr
    m = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())
    assert m["status"] == "completed" and m["metrics"]["epochs"] == 4
