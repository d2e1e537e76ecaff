"""The ``forge export --set`` options of forge-hf's exporters, validated before any weight loads (no torch here).

Fields left unset keep the exporter's own default (some depend on ``--quantize``); the descriptions say which.
"""

from __future__ import annotations

from typing import Literal

from forge.config import DataFile, FieldRules
from pydantic import Field


class MergedOptions(FieldRules):
    """``forge export RUN --format merged [--set dtype=bf16]``."""

    dtype: Literal["fp32", "bf16", "fp16", "auto"] = Field("fp32", description="dtype of the merged weights")
    tolerance: float | None = Field(None, gt=0, description="max abs logit difference to the adapter model "
                                    "(default 1e-3 for fp32, 0.5 otherwise)")


class GGUFOptions(FieldRules):
    """``forge export RUN --format gguf [--quantize q8_0] [--set ...]``."""

    quantize: Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"] = Field(
        "f16", description="GGUF file type")
    tolerance: float | None = Field(None, gt=0, description="max abs logit difference for f32/f16/bf16 "
                                    "(default per type: export_gguf.TOLERANCE)")
    min_token_agreement: float | None = Field(None, ge=0, le=1, description="share of greedy tokens that must "
                                              "agree (default per type: export_gguf.MIN_TOKEN_AGREEMENT)")
    samples: int = Field(8, ge=1, le=10_000, description="held-out prompts compared")
    max_new_tokens: int = Field(48, ge=1, le=100_000, description="greedy tokens generated per prompt")
    prompts: DataFile | None = Field(None, description="JSONL prompts to compare on (default: the run's "
                                     "heldout.jsonl)")
    require_eos: bool = Field(True, description="greedy generation must still end with EOS")
    name: str | None = Field(None, min_length=1, description="model name written into the file")
    llama_cpp: bool = Field(True, description="also check through llama.cpp when llama-cpp-python is installed")
