"""dpo and grpo end to end on a tiny model."""

from __future__ import annotations

import json

from test_sft import manifest, write_jsonl

PREFS = [{"prompt": f"capital of {c}?", "chosen": f" {p}.", "rejected": " i do not know."}
         for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")]] * 2
CHAT_PREFS = [{"prompt": [{"role": "user", "content": r["prompt"]}],
               "chosen": [{"role": "assistant", "content": r["chosen"]}],
               "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in PREFS]


def test_dpo_plain_and_chat(forge_cli, tiny_lm):
    for name, records in (("plain", PREFS), ("chat", CHAT_PREFS)):
        data = write_jsonl(forge_cli.cwd / f"{name}.jsonl", records)
        forge_cli("run", "--recipe", "dpo", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
                  "--set", "per_device_train_batch_size=2", "--set", "logging_steps=1", "--set", "eval_split=0.25",
                  "-o", name, "--no-tracking", check=True)
        m = manifest(forge_cli.cwd / name)
        assert m["status"] == "completed" and m["artifact"]["kind"] == "causal-lm-adapter"
        assert "eval_loss" in m["metrics"] and "rewards/chosen" in m["metrics"]


def test_dpo_missing_field(forge_cli, tiny_lm):
    data = write_jsonl(forge_cli.cwd / "p.jsonl", [PREFS[0], {"prompt": "x", "chosen": "y"}])
    result = forge_cli("run", "--recipe", "dpo", "--model", tiny_lm, "--data", data, "--no-tracking")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {data}:2: missing field 'rejected'"


def test_grpo_builtin_and_user_rewards(forge_cli, tiny_lm):
    (forge_cli.cwd / "my_rewards.py").write_text(
        "def short(prompts, completions, **kw):\n    return [-len(str(c)) / 100 for c in completions]\n")
    data = write_jsonl(forge_cli.cwd / "q.jsonl", [
        {"messages": [{"role": "user", "content": f"what is {a} plus {b}?"},
                      {"role": "assistant", "content": f"#### {a + b}"}]} for a in range(3) for b in range(2)])
    forge_cli("run", "--recipe", "grpo", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
              "--set", "reward_funcs=[answer, format, length, 'my_rewards:short']", "--set", "num_generations=2",
              "--set", "per_device_train_batch_size=2", "--set", "max_completion_length=8", "--set", "logging_steps=1",
              "-o", "r", "--no-tracking", env={"PYTHONPATH": f"{forge_cli.cwd}:{forge_cli.env['PYTHONPATH']}"},
              check=True)
    m = manifest(forge_cli.cwd / "r")
    assert m["status"] == "completed" and "final_reward" in m["metrics"]
    rows = [json.loads(x) for x in (forge_cli.cwd / "r" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/short/mean" in r for r in rows)
    art = json.loads((forge_cli.cwd / "r" / "artifact" / "forge.json").read_text())
    assert art["rewards"] == ["answer", "format", "length", "my_rewards:short"]


def test_grpo_unknown_reward_is_a_config_error(forge_cli, tiny_lm):
    result = forge_cli("run", "--recipe", "grpo", "--model", tiny_lm, "--data", "x.jsonl",
                       "--set", "reward_funcs=[fromat]", "--dry-run")
    assert result.returncode == 2
    assert "reward_funcs: unknown reward 'fromat'" in result.stderr
    result = forge_cli("run", "--recipe", "grpo", "--model", tiny_lm, "--data", "x.jsonl",
                       "--set", "reward_funcs=[my-rewards:fn]", "--dry-run")
    assert result.returncode == 2 and "reward_funcs: unknown reward 'my-rewards:fn'" in result.stderr


def test_grpo_rewards_are_imported_when_training_starts_not_at_dry_run(forge_cli, tiny_lm):
    (forge_cli.cwd / "noisy_rewards.py").write_text(
        "open('imported.txt', 'w').write('yes')\n"
        "def r(prompts, completions, **kw):\n    return [0.0 for c in completions]\n")
    data = write_jsonl(forge_cli.cwd / "q.jsonl", [{"prompt": f"say {i}"} for i in range(4)])
    env = {"PYTHONPATH": f"{forge_cli.cwd}:{forge_cli.env['PYTHONPATH']}"}
    result = forge_cli("run", "--recipe", "grpo", "--model", tiny_lm, "--data", data, "--dry-run",
                       "--set", "reward_funcs=[noisy_rewards:r]", env=env)
    assert result.returncode == 0, result.stderr
    assert "noisy_rewards:r" in result.stdout and not (forge_cli.cwd / "imported.txt").exists()
    result = forge_cli("run", "--recipe", "grpo", "--model", tiny_lm, "--data", data, "-o", "r", "--no-tracking",
                       "--set", "reward_funcs=[nomod:fn]", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "forge: error: reward_funcs: reward 'nomod:fn': cannot import nomod (No module named 'nomod')")
    assert manifest(forge_cli.cwd / "r")["status"] == "failed"
