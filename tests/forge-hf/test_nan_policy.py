"""A run whose training loss becomes NaN/inf stops at that step, keeps its last good checkpoint and ends failed
(nan_policy: stop, the default); nan_policy: continue trains on. A learning rate of 1e30 makes the loss non-finite
after the first update."""

from __future__ import annotations

from test_classify import write_reviews
from test_sft import CHAT, manifest, write_jsonl

DIVERGE = ["--set", "learning_rate=1e30", "--set", "save_steps=1", "--set", "logging_steps=1", "--no-tracking"]


def checkpoints(run):
    return sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))


def test_sft_nan_loss_stops_failed_with_last_good_checkpoint(forge_cli, tiny_lm):
    """Warmup: step 1 trains at learning rate 0 (checkpoint-1 is good), then at ~1e30: the loss goes non-finite a
    step or two later (RMSNorm keeps it finite, if huge, for a step)."""
    data = write_jsonl(forge_cli.cwd / "chat.jsonl", CHAT)
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=6",
                       "--set", "use_peft=false", "--set", "eval_split=0", "--set", "warmup_steps=2", *DIVERGE,
                       "-o", "r")
    run = forge_cli.cwd / "r"
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("forge: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "training loss became" in errors[0] and "nan_policy: stop" in errors[0]
    m = manifest(run)
    assert m["status"] == "failed" and "training loss became" in m["error"]
    step = int(errors[0].split(" at step ")[1].split(":")[0])
    assert 3 <= step < 6  # it stopped at the step the loss went bad, not at max_steps
    # nothing saved after it; the checkpoint whose weights gave the non-finite loss is set aside, and the one before
    # it (save_total_limit 2 keeps two) is the last good one, where a resume would start
    assert (run / "checkpoints" / f"diverged-checkpoint-{step - 1}").is_dir()
    assert checkpoints(run) == [step - 2]
    assert f"last good checkpoint r/checkpoints/checkpoint-{step - 2};" in errors[0]
    assert not (run / "artifact").exists()


def test_classify_nan_policy_continue_completes(forge_cli, tiny_bert):
    write_reviews(forge_cli.cwd / "r.csv")
    result = forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", "--set", "max_steps=4",
                       "--set", "nan_policy=continue", *DIVERGE, "-o", "run")
    assert result.returncode == 0, result.stderr
    assert manifest(forge_cli.cwd / "run")["status"] == "completed"
    assert "(nan_policy: continue)" in result.stderr and result.stderr.count("going on (nan_policy") == 1


def test_classify_nan_loss_fails(forge_cli, tiny_bert):
    write_reviews(forge_cli.cwd / "r.csv")
    result = forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", "--set", "max_steps=4",
                       *DIVERGE, "-o", "run")
    assert result.returncode == 2 and "training loss became" in result.stderr
    assert manifest(forge_cli.cwd / "run")["status"] == "failed"
