"""The provider contract: what a recipe asks for (:class:`ModelRequest`) and gets back (:class:`LoadedModel`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forge.errors import ForgeError


class ProviderUnavailable(ForgeError):
    """A provider cannot load this request here (no GPU, unsupported model...). The message says why."""


@dataclass(frozen=True)
class ModelRequest:
    """What to load.

    ``model`` is a hub id, a local directory, a GGUF file or an offline alias. ``task`` is ``causal-lm`` or
    ``sequence-classification``. ``quantization`` is ``None`` or ``"4bit"`` (NF4). ``lora`` holds peft LoRA
    settings for providers that patch LoRA themselves (Unsloth). ``seed``, when set, is applied by the provider
    right before the model is built, so randomly initialised parts (a classification head) are the same every run.
    """

    model: str
    task: str = "causal-lm"
    quantization: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    max_seq_length: int | None = None
    gradient_checkpointing: bool = False
    lora: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # providers seed every RNG with it right before building the model (heads, LoRA)


@dataclass
class LoadedModel:
    """A loaded model and tokenizer, and facts about the load for the manifest (dtype, device, source...)."""

    model: Any
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)
    lora_applied: bool = False
