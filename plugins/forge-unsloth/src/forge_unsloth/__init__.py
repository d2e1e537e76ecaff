"""forge-unsloth: the Unsloth provider. Registered by reference; deciding availability imports neither unsloth
nor torch, so the CLI stays fast."""

from __future__ import annotations

import forge

__version__ = "0.1.0"


@forge.hookimpl
def register_providers(register: forge.Register) -> None:
    register(forge.Provider(
        name="unsloth",
        load="forge_unsloth.provider:load",
        available="forge_unsloth.availability:unavailable_reason",
        summary="Unsloth FastLanguageModel: 4-bit, fast LoRA, less memory (GPU)",
        priority=20,
        tasks=("causal-lm",),
    ))
