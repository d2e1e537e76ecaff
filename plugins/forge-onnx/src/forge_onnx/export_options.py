"""The ``forge export --format onnx --set`` options, validated before any model loads (no torch here). Fields left
unset keep the exporter's own default; some apply to one artifact kind only (the exporter says so)."""

from __future__ import annotations

from typing import Literal

from forge.config import DataFile, FieldRules
from pydantic import Field, field_validator


class OnnxOptions(FieldRules):
    """``forge export RUN --format onnx [--quantize int8] [--set ...]``."""

    quantize: Literal["int8"] | None = Field(None, description="int8: onnxruntime dynamic quantization")
    tolerance: float | None = Field(None, gt=0, description="fp32 max abs difference to the source model "
                                    "(default 1e-4; causal LMs 1e-3)")
    max_accuracy_drop: float | None = Field(None, ge=-1, le=1, description="int8 classifier: held-out accuracy "
                                            "may drop by at most this (default 0.02; negative: must improve)")
    int8_tolerance: float | None = Field(None, gt=0, description="int8 forecaster: relative forecast change "
                                         "allowed (default 0.05)")
    opset: int | None = Field(None, ge=14, le=28, description="ONNX opset (default 18; causal LMs: 23 with "
                              "onnxruntime >= 1.23, else the exporter's)")
    max_perplexity_increase: float | None = Field(None, ge=-1, description="int8 causal LM: relative held-out "
                                                  "perplexity increase allowed (default 0.05; negative: must "
                                                  "improve)")
    min_token_agreement: float | None = Field(None, ge=0, le=1, description="int8 causal LM: greedy-token "
                                              "agreement required (default 0.9)")
    samples: int | None = Field(None, ge=1, le=10_000, description="causal LM: held-out prompts compared (default 8)")
    max_new_tokens: int | None = Field(None, ge=1, le=100_000, description="causal LM: greedy tokens per prompt "
                                       "(default 48)")
    prompts: DataFile | None = Field(None, description="causal LM: JSONL prompts (default: heldout.jsonl)")
    require_eos: bool | None = Field(None, description="causal LM: greedy generation must still end with EOS "
                                     "(default true)")
    per_channel: bool | None = Field(None, description="causal LM int8 dynamic: per-channel weight scales (default "
                                     "true)")
    int8_method: Literal["blockwise", "dynamic"] | None = Field(None, description="causal LM int8: blockwise "
                                                                "(MatMulNBits, the default) or dynamic")
    block_size: int | None = Field(None, ge=16, le=4096, description="causal LM int8 blockwise: weights per scale, "
                                   "a power of two (default 32)")

    rewrite: bool | None = Field(None, description="causal LM: fuse each layer's attention into onnxruntime's "
                                 "GroupQueryAttention and pack q/k/v and gate/up MatMuls, before the parity check "
                                 "(default true)")

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError(f"must be a power of two, got {value}")
        return value
