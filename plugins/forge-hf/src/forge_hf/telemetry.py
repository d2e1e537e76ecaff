"""Throughput telemetry of LM training runs: real tokens/s, padding share, samples/s, peak GPU memory and MFU.

Counted where every provider's training passes: the Trainer's data collator (wrapped after the trainer is built) sees
each batch, so real tokens (attention-mask ones, or every position of a padding-free batch) and padded positions are
counted the same way for the ``hf`` and ``unsloth`` providers. At each logging step the callback reports the rates
since the previous logging step; the run summary (manifest ``throughput``, one run-log line) covers the whole run.

MFU (model FLOPs utilisation) = achieved FLOP/s ÷ the device's peak dense bf16 FLOP/s. Achieved FLOP/s = real
tokens/s × FLOPs per token, with FLOPs per token ≈ 6·N + 12·L·d·S for full fine-tuning and 4·N + 12·L·d·S when the
base weights are frozen (LoRA, QLoRA: the backward pass computes activation gradients but no weight gradients),
where N is the parameter count of the matrix multiplications (input embeddings excluded unless tied to the output
head), L the layers, d the hidden size and S the mean sequence length (the attention term, PaLM appendix B).
Peaks come from a table of GPU names (``PEAK_TFLOPS``); ``FORGE_PEAK_TFLOPS`` overrides it. No MFU on CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Dense bf16/fp16 tensor-core peak, TFLOP/s (vendor datasheets, without sparsity).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIE": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}


def device_peak_tflops(name: str) -> float | None:
    """Peak dense bf16 TFLOP/s for a CUDA device name (``NVIDIA H100 80GB HBM3``), or None when unknown."""
    override = os.environ.get("FORGE_PEAK_TFLOPS")
    if override:
        return float(override)
    upper = name.upper()
    for key, value in PEAK_TFLOPS.items():  # most specific names first
        if key in upper:
            return value
    return None


def flops_per_token(model: Any, seq_len: float, frozen_base: bool) -> float:
    """Training FLOPs per real token (see the module docstring)."""
    config = getattr(model, "config", None)
    matmul = 0
    embeddings = set()
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if callable(getter) else None
    if embedding is not None:
        embeddings = {id(p) for p in embedding.parameters()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, parameter in model.named_parameters():
        if (id(parameter) in embeddings and not tied) or "lora_" in name:
            continue
        matmul += parameter.numel()
    layers = getattr(config, "num_hidden_layers", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    per_param = 4 if frozen_base else 6
    return per_param * matmul + 12 * layers * hidden * seq_len


@dataclass
class Throughput:
    """Counters fed by the collator, turned into rates at logging steps."""

    real_tokens: int = 0
    positions: int = 0
    samples: int = 0
    started: float | None = None
    _mark: tuple[float, int, int, int] | None = None
    peak_tflops: float | None = None
    device: str = "cpu"
    flops_per_token: float | None = None
    model: Any = None
    frozen_base: bool = False
    last: dict[str, float] = field(default_factory=dict)

    def observe(self, batch: Any) -> None:
        """Count one collated training batch (a mapping of tensors, or anything else: then only samples)."""
        if self.started is None:
            self.started = time.perf_counter()
            self._mark = (self.started, 0, 0, 0)
        if not isinstance(batch, Mapping):
            self.samples += len(batch) if hasattr(batch, "__len__") else 0
            return
        real, positions, samples = _count(batch)
        self.real_tokens += real
        self.positions += positions
        self.samples += samples

    def rates(self) -> dict[str, float]:
        """Rates since the previous call (and peak memory so far); empty before the first batch."""
        if self._mark is None:
            return {}
        now = time.perf_counter()
        then, real, positions, samples = self._mark
        seconds = max(now - then, 1e-9)
        out: dict[str, float] = {}
        if self.real_tokens > real:
            out["tokens_per_s"] = (self.real_tokens - real) / seconds
            out["padding_share"] = 1 - (self.real_tokens - real) / max(self.positions - positions, 1)
        if self.samples > samples:
            out["samples_per_s"] = (self.samples - samples) / seconds
        out.update(self._memory())
        if "tokens_per_s" in out and self.flops_per_token and self.peak_tflops:
            out["mfu"] = out["tokens_per_s"] * self.flops_per_token / (self.peak_tflops * 1e12)
        self._mark = (now, self.real_tokens, self.positions, self.samples)
        self.last = out
        return out

    def summary(self, train_seconds: float | None = None) -> dict[str, Any]:
        """The whole run: real tokens, padding share, rates over ``train_seconds`` (default: since the first batch)."""
        if self.started is None:
            return {}
        seconds = train_seconds or (time.perf_counter() - self.started)
        summary: dict[str, Any] = {
            "real_tokens": self.real_tokens,
            "padding_share": round(1 - self.real_tokens / self.positions, 4) if self.positions else None,
            "tokens_per_s": round(self.real_tokens / seconds, 1) if self.real_tokens else None,
            "samples_per_s": round(self.samples / seconds, 2) if self.samples else None,
            "device": self.device,
        }
        summary.update({k: round(v, 3) for k, v in self._memory().items()})
        if summary["tokens_per_s"] and self.flops_per_token and self.peak_tflops:
            summary["mfu"] = round(summary["tokens_per_s"] * self.flops_per_token / (self.peak_tflops * 1e12), 4)
            summary["peak_tflops"] = self.peak_tflops
            summary["flops_per_token"] = round(self.flops_per_token)
        return summary

    def _memory(self) -> dict[str, float]:
        if not self.device.startswith("cuda"):
            return {}
        import torch

        return {"gpu_peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                "gpu_peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def _count(batch: Mapping[str, Any]) -> tuple[int, int, int]:
    """(real tokens, token positions, samples) of one batch. Preference batches (chosen/rejected) count both sides;
    a padding-free batch (position_ids, no attention mask) is all real tokens."""
    masks = [v for k, v in batch.items() if k.endswith("attention_mask") and hasattr(v, "sum")]
    ids = [v for k, v in batch.items() if k.endswith("input_ids") and hasattr(v, "numel")]
    if masks:
        real = sum(int(m.sum()) for m in masks)
        positions = sum(int(m.numel()) for m in masks)
        samples = int(masks[0].shape[0]) if masks[0].dim() > 1 else 1
    elif ids:
        real = positions = sum(int(i.numel()) for i in ids)
        starts = batch.get("position_ids")
        samples = int((starts == 0).sum()) if starts is not None and hasattr(starts, "sum") else int(ids[0].shape[0])
    else:
        return 0, 0, 0
    return real, positions, samples


class CountingCollator:
    """``collator`` that also feeds ``throughput`` with every batch it builds. Other attributes are the wrapped
    collator's (sentence-transformers' trainer reads ``valid_label_columns`` from its collator)."""

    def __init__(self, collator: Callable[[Any], Any], throughput: Throughput) -> None:
        self.collator = collator
        self.throughput = throughput

    def __call__(self, features: Any) -> Any:
        batch = self.collator(features)
        self.throughput.observe(batch)
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["collator"], name)


def counting_collator(collator: Callable[[Any], Any], throughput: Throughput) -> Callable[[Any], Any]:
    """``collator`` that also feeds ``throughput`` with every batch it builds."""
    return CountingCollator(collator, throughput)


def start(trainer: Any, frozen_base: bool) -> Throughput:
    """Attach throughput counting to ``trainer`` (wraps its collator); call before ``trainer.train()``."""
    import torch

    model = trainer.model
    throughput = Throughput(model=model, frozen_base=frozen_base, device=str(getattr(model, "device", "cpu")))
    if throughput.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        throughput.peak_tflops = device_peak_tflops(torch.cuda.get_device_name(0))
    if getattr(trainer, "data_collator", None) is not None:
        trainer.data_collator = counting_collator(trainer.data_collator, throughput)
    return throughput


def update_flops(throughput: Throughput) -> None:
    """FLOPs per token from the mean sequence length seen so far (needs the first batches)."""
    if throughput.model is None or throughput.samples == 0 or throughput.real_tokens == 0:
        return
    seq_len = throughput.real_tokens / throughput.samples
    throughput.flops_per_token = flops_per_token(throughput.model, seq_len, throughput.frozen_base)
