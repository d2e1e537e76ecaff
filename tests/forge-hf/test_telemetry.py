"""Throughput telemetry of LM runs (tokens/s of real tokens, padding share, samples/s, memory, MFU) and the
GPU-only options' one-line refusals on a CPU machine."""

from __future__ import annotations

import json

import pytest

CHAT = [{"messages": [{"role": "user", "content": "capital of " + c},
                      {"role": "assistant", "content": p + " is the capital" * n}]}
        for n, (c, p) in enumerate([("france", "paris"), ("spain", "madrid"), ("peru", "lima"), ("chad", "n")] * 3)]


def test_counting_real_tokens_and_padding_from_a_batch():
    import torch
    from forge_hf.telemetry import Throughput

    throughput = Throughput()
    throughput.observe({"input_ids": torch.zeros(2, 5), "attention_mask": torch.tensor([[1, 1, 1, 0, 0],
                                                                                        [1, 1, 1, 1, 1]])})
    throughput.observe({"chosen_input_ids": torch.zeros(1, 4), "chosen_attention_mask": torch.tensor([[1, 1, 0, 0]]),
                        "rejected_input_ids": torch.zeros(1, 4),
                        "rejected_attention_mask": torch.tensor([[1, 1, 1, 1]])})
    padding_free = {"input_ids": torch.zeros(1, 9), "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])}
    throughput.observe(padding_free)
    assert throughput.real_tokens == 8 + 6 + 9 and throughput.positions == 10 + 8 + 9
    assert throughput.samples == 2 + 1 + 3
    rates = throughput.rates()
    assert rates["padding_share"] == pytest.approx(1 - 23 / 27) and rates["tokens_per_s"] > 0
    assert throughput.rates() == {}  # nothing new since the last logging step


def test_peak_table_and_override(monkeypatch):
    from forge_hf.telemetry import device_peak_tflops

    assert device_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert device_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert device_peak_tflops("NVIDIA H200") == 989.0
    assert device_peak_tflops("Some Future Accelerator") is None
    monkeypatch.setenv("FORGE_PEAK_TFLOPS", "100")
    assert device_peak_tflops("Some Future Accelerator") == 100.0


def test_flops_per_token_counts_matmul_weights(tiny_lm):
    from forge_hf.telemetry import flops_per_token
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    n = sum(p.numel() for p in model.parameters())  # tied embeddings: the table is the output head too
    attention = 12 * model.config.num_hidden_layers * model.config.hidden_size * 10
    assert flops_per_token(model, 10, frozen_base=False) == 6 * n + attention
    assert flops_per_token(model, 10, frozen_base=True) == 4 * n + attention


def test_every_lm_run_reports_throughput(forge_cli, tiny_lm):
    data = forge_cli.cwd / "c.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=4",
                       "--set", "logging_steps=2", "--set", "eval_split=0", "-o", "r", "--no-tracking", check=True)
    run = forge_cli.cwd / "r"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss" in r]
    assert logged and all(r["tokens_per_s"] > 0 and 0 <= r["padding_share"] < 1 for r in logged)
    summary = json.loads((run / "forge.json").read_text())["throughput"]
    assert summary["real_tokens"] > 0 and summary["device"] == "cpu" and "mfu" not in summary  # no MFU on CPU
    assert 0 < summary["padding_share"] < 1  # the records have different lengths: padding is counted
    assert "throughput: " in result.stderr and "tokens/s" in result.stderr
    assert "tok/s" in result.stderr  # the compact per-step line
    assert "{'loss'" not in result.stdout + result.stderr  # the Trainer's raw log dicts are not printed


@pytest.mark.parametrize("setting, message", [
    ("use_liger_kernel=true", "use_liger_kernel"),
    ("attn_implementation=flash_attention_2", "attn_implementation"),
])
def test_gpu_only_options_are_one_line_on_this_cpu(forge_cli, tiny_lm, setting, message):
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--set", setting, "--set", "max_steps=1",
                       "--no-tracking", "-o", "r")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("forge: error:") and message in line
