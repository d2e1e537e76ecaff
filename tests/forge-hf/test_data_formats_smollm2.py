"""Every data format trains end to end on the packaged SmolLM2-135M-Instruct (issue 10): the four chat-like SFT
formats (tool calls included) as one mixture, prompt/completion and text each on their own, and a DPO chat pair."""

from __future__ import annotations

import json

import pytest
from test_data_formats import SFT_RECORDS, TOOLS, USER_ASSISTANT, write_jsonl

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("case", ["chat-like mixture", "prompt-completion", "text", "dpo chat-pair"])
def test_smollm2_trains_on_each_format(forge_cli, case):
    cwd = forge_cli.cwd
    recipe = "sft"
    if case == "chat-like mixture":
        for name in ("sharegpt", "alpaca", "input-output"):
            write_jsonl(cwd / f"{name}.jsonl", [SFT_RECORDS[name]] * 2)
        write_jsonl(cwd / "chat.jsonl", [TOOLS, SFT_RECORDS["chat"]])
        (cwd / "c.yaml").write_text("data:\n" + "".join(
            f"  - {{path: {n}.jsonl}}\n" for n in ("chat", "sharegpt", "alpaca", "input-output")))
        config = ["-c", "c.yaml"]
        expected = ["data: mixture of 4 sources", "data: 8 records, format mixed"]
    elif case == "dpo chat-pair":
        recipe = "dpo"
        pair = {"chosen": USER_ASSISTANT, "rejected": [USER_ASSISTANT[0], {"role": "assistant", "content": "6"}]}
        write_jsonl(cwd / "d.jsonl", [pair] * 4)
        config, expected = ["--data", "d.jsonl"], ["format chat-pair"]
    else:
        write_jsonl(cwd / "d.jsonl", [SFT_RECORDS[case]] * 4)
        config, expected = ["--data", "d.jsonl"], [f"format {case}"]
    result = forge_cli("run", "--recipe", recipe, "--model", "smollm2-135m-instruct", *config, "--set", "max_steps=1",
                       "--set", "eval_split=0", "-o", "r", "--no-tracking", check=True, timeout=900)
    for text in expected:
        assert text in result.stderr
    manifest = json.loads((cwd / "r" / "forge.json").read_text())
    assert manifest["status"] == "completed" and manifest["metrics"]["train_loss"] > 0
    if case == "chat-like mixture":
        assert [s["format"] for s in manifest["data_sources"]] == ["chat", "sharegpt", "alpaca", "input-output"]
