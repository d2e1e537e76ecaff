"""Every recipe is reproducible on CPU: the same config, data and seed give bit-identical weights (issue 20)."""

from __future__ import annotations

import pytest
from test_classify import write_reviews
from test_dpo_grpo import PREFS
from test_sft import write_jsonl

CHAT = [{"messages": [{"role": "user", "content": f"what is {a} plus {b}?"},
                      {"role": "assistant", "content": f"{a + b}"}]} for a in range(4) for b in range(3)]
COMMON = ["--set", "per_device_train_batch_size=2", "--no-tracking"]


def tensors(artifact):
    from safetensors.torch import load_file

    files = sorted(artifact.rglob("*.safetensors"))
    assert files, f"no weights under {artifact}"
    return {f.relative_to(artifact).as_posix(): load_file(f) for f in files}


def assert_identical(a, b):
    import torch

    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].keys() == tb[name].keys()
        for key in ta[name]:
            a, b = (t[name][key].contiguous().view(-1).view(torch.uint8) for t in (ta, tb))  # the bits, any dtype
            assert torch.equal(a, b), f"{name}:{key} differs between two runs"


@pytest.mark.parametrize("recipe", ["sft", "qlora", "dpo", "grpo", "classify"])
def test_same_seed_same_weights(forge_cli, tiny_lm, tiny_bert, recipe):
    if recipe == "classify":
        data = write_reviews(forge_cli.cwd / "r.csv")
        args = ["--model", tiny_bert, "--set", "num_train_epochs=1"]
    elif recipe == "dpo":
        data = write_jsonl(forge_cli.cwd / "p.jsonl", PREFS)
        args = ["--model", tiny_lm, "--set", "max_steps=2"]
    elif recipe == "grpo":
        data = write_jsonl(forge_cli.cwd / "q.jsonl", CHAT)
        args = ["--model", tiny_lm, "--set", "max_steps=2", "--set", "num_generations=2",
                "--set", "max_completion_length=6", "--set", "reward_funcs=[length]"]
    elif recipe == "qlora":  # bitsandbytes' CPU eval path needs dims >= its block size: no eval on the tiny model
        data = write_jsonl(forge_cli.cwd / "c.jsonl", CHAT)
        args = ["--model", tiny_lm, "--set", "max_steps=2", "--set", "eval_split=0",
                "--set", "lora_target_modules=[q_proj,v_proj]"]
    else:
        data = write_jsonl(forge_cli.cwd / "c.jsonl", CHAT)
        args = ["--model", tiny_lm, "--set", "max_steps=2"]
    for name in ("a", "b"):
        forge_cli("run", "--recipe", recipe, "--data", data, *args, *COMMON, "--set", "seed=7", "-o", name,
                  check=True)
    assert_identical(forge_cli.cwd / "a" / "artifact", forge_cli.cwd / "b" / "artifact")
    forge_cli("run", "--recipe", recipe, "--data", data, *args, *COMMON, "--set", "seed=8", "-o", "c", check=True)
    with pytest.raises(AssertionError, match="differs"):  # the comparison can fail: another seed, other weights
        assert_identical(forge_cli.cwd / "a" / "artifact", forge_cli.cwd / "c" / "artifact")
