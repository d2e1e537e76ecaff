"""FSDP through the Trainer on 2 CPU processes (torchrun, gloo): a full fine-tune and LoRA, each compared with one
process on the same global batch, and the saved artifact is a whole (consolidated) model / adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHAT = [
    {"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                  {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
    for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")]
]


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.parametrize("peft", ["false", "true"], ids=["full", "lora"])
def test_fsdp_full_shard_on_two_cpu_processes_matches_one_process(forge_cli, tiny_lm, peft):
    from safetensors import safe_open

    data = forge_cli.cwd / "four.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))  # every step sees all 4 records
    common = ["run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
              "--set", "logging_steps=1", "--set", "eval_split=0", "--set", f"use_peft={peft}", "--no-tracking"]
    forge_cli(*common, "--set", "fsdp=full_shard auto_wrap", "--set", "per_device_train_batch_size=2",
              "--nproc-per-node", "2", "-o", "fsdp", check=True, timeout=600)
    forge_cli(*common, "--set", "per_device_train_batch_size=4", "-o", "one", check=True, timeout=600)
    fsdp, one = forge_cli.cwd / "fsdp", forge_cli.cwd / "one"
    m = json.loads((fsdp / "forge.json").read_text())
    assert m["status"] == "completed" and [r["rank"] for r in m["ranks"]] == [0, 1]
    assert losses(fsdp) == pytest.approx(losses(one), rel=1e-4)
    name = "model.safetensors" if peft == "false" else "adapter_model.safetensors"
    with safe_open(fsdp / "artifact" / name, "pt") as a, safe_open(one / "artifact" / name, "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        # Adam moves each weight by about lr (2e-4) per step whatever its gradient's size, so a gradient near zero
        # whose sign differs in the last bits moves it the other way: equal within 2 steps' worth (full fine-tunes
        # agree to 1e-4 here; LoRA's B starts at zero and its A gradients are tiny)
        atol = 1e-4 if peft == "false" else 1e-3
        for key in b.keys():  # noqa: SIM118 (safe_open has keys(), not __iter__)
            assert a.get_tensor(key).shape == b.get_tensor(key).shape, key  # consolidated: every tensor whole
            assert a.get_tensor(key).float().allclose(b.get_tensor(key).float(), atol=atol), key
