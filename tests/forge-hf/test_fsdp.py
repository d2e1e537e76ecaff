"""FSDP through the Trainer on 2 CPU processes (torchrun, gloo): a full fine-tune and LoRA, each compared with one
process on the same global batch; the saved artifact is a whole (consolidated) model / adapter, which `forge export`
takes and `forge serve` answers from like the one-process run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHAT = [
    {"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                  {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
    for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")]
]
QUESTION = [{"role": "user", "content": "what is the capital of spain?"}]


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module", params=["false", "true"], ids=["full", "lora"])
def runs(request, tmp_path_factory, tiny_lm, mlflow_uri) -> tuple[str, Path, Path]:
    """(use_peft, the FSDP run on 2 processes, the one-process run with the same global batch): trained once."""
    peft = request.param
    work = tmp_path_factory.mktemp(f"fsdp-{peft}")
    data = work / "four.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))  # every step sees all 4 records
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = mlflow_uri
    common = [sys.executable, "-m", "forge", "run", "--recipe", "sft", "--model", str(tiny_lm), "--data", str(data),
              "--set", "max_steps=2", "--set", "logging_steps=1", "--set", "eval_split=0", "--set",
              f"use_peft={peft}", "--no-tracking"]
    if peft == "true":  # dropout draws its masks per process: one process and two would not see the same ones
        common += ["--set", "lora_dropout=0"]
    for extra in (["--set", "fsdp=full_shard auto_wrap", "--set", "per_device_train_batch_size=2",
                   "--nproc-per-node", "2", "-o", "fsdp"],
                  ["--set", "per_device_train_batch_size=4", "-o", "one"]):
        done = subprocess.run([*common, *extra], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return peft, work / "fsdp", work / "one"


def test_fsdp_full_shard_on_two_cpu_processes_matches_one_process(runs):
    from safetensors import safe_open

    peft, fsdp, one = runs
    m = json.loads((fsdp / "forge.json").read_text())
    assert m["status"] == "completed" and [r["rank"] for r in m["ranks"]] == [0, 1]
    assert losses(fsdp) == pytest.approx(losses(one), rel=1e-4)
    name = "model.safetensors" if peft == "false" else "adapter_model.safetensors"
    with safe_open(fsdp / "artifact" / name, "pt") as a, safe_open(one / "artifact" / name, "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        # measured within 1e-7 (full and LoRA: the same data per step and no dropout; with lora_dropout 0.05 each
        # process draws its own masks and half the LoRA B weights differ by up to 6e-4)
        atol = 1e-5
        for key in b.keys():  # noqa: SIM118 (safe_open has keys(), not __iter__)
            assert a.get_tensor(key).shape == b.get_tensor(key).shape, key  # consolidated: every tensor whole
            assert a.get_tensor(key).float().allclose(b.get_tensor(key).float(), atol=atol), key


def logits(ref: Path):
    """Next-token logits of an artifact on a sample text, the model loaded as `forge serve`/`forge predict` load it
    (an adapter merged into its base in memory)."""
    import torch
    from forge.references import open_artifact
    from forge_hf.serve_lm import load_for_inference

    model, tokenizer = load_for_inference(open_artifact(ref))
    with torch.inference_mode():
        return model(**tokenizer("the capital of spain is madrid", return_tensors="pt")).logits.float()


def test_the_fsdp_artifact_exports_and_serves_like_the_one_process_one(forge_cli, runs):
    """Full fine-tune: `forge export --format gguf` (f32; the exporter checks the file's logits against the model),
    and the run's model computes the one-process run's logits. LoRA: `forge export --format merged`, whose logits are
    the one-process adapter's, and a real `forge serve` of the merged model answering on loopback."""
    peft, fsdp, one = runs
    expected = logits(one)
    if peft == "false":
        forge_cli("export", fsdp, "--format", "gguf", "--quantize", "f32", "-o", "gguf", check=True, timeout=600)
        made = json.loads((forge_cli.cwd / "gguf" / "forge.json").read_text())
        assert made["kind"] == "gguf-causal-lm" and made["parent"]["kind"] == "causal-lm"
        assert made["parity"]["transformers"]["max_abs_logit_diff"] <= 1e-3
        assert (logits(fsdp) - expected).abs().max() < 1e-4
        return
    import httpx
    from support import Server

    merged = forge_cli.cwd / "merged"
    forge_cli("export", fsdp, "--format", "merged", "-o", merged, check=True, timeout=600)
    made = json.loads((merged / "forge.json").read_text())
    assert made["kind"] == "causal-lm" and made["parent"]["kind"] == "causal-lm-adapter"
    assert made["parity"]["max_abs_logit_diff"] < 1e-3
    assert (logits(merged) - expected).abs().max() < 1e-4
    with Server(forge_cli, merged) as server:
        answer = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "messages": QUESTION, "max_tokens": 4, "temperature": 0}).json()
    assert answer["choices"][0]["message"]["role"] == "assistant" and answer["usage"]["completion_tokens"] == 4
