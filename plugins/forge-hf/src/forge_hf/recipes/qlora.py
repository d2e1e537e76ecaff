"""Recipe ``qlora``: ``sft`` with LoRA on a 4-bit NF4 base (bitsandbytes), through the best available provider
(unsloth when installed and usable, else hf). The manifest records which provider ran and the quantization.

    forge run --recipe qlora --model smollm2-135m-instruct --data train.jsonl --set max_steps=100
"""

from __future__ import annotations

from typing import Literal

from forge.artifacts import ArtifactResult
from forge.run.context import RunContext
from pydantic import Field

from forge_hf.recipes import sft


class QLoRARecipeConfig(sft.SFTRecipeConfig):
    load_in_4bit: Literal[True] = Field(True, description="4-bit NF4 base: the point of qlora")
    use_peft: Literal[True] = Field(True, description="qlora always trains LoRA adapters")
    gradient_checkpointing: bool = True


def train(ctx: RunContext, config: QLoRARecipeConfig) -> ArtifactResult:
    return sft.train(ctx, config)
