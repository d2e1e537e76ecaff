"""The config's word is final over TRL's own defaults (a bug: TRL defaults gradient checkpointing to on)."""

from __future__ import annotations

from pathlib import Path


def test_gradient_checkpointing_off_means_off(tmp_path: Path):
    import trl
    from forge_hf.recipes.common import training_arguments
    from forge_hf.recipes.sft import SFTRecipeConfig

    class Ctx:
        checkpoint_dir = tmp_path

    for enabled in (False, True):
        config = SFTRecipeConfig(gradient_checkpointing=enabled)
        args = trl.SFTConfig(**training_arguments(Ctx(), config, False, object()))
        assert args.gradient_checkpointing is enabled
        assert args.bf16 is False  # an fp32 model trains in fp32 on CPU; TRL would default to bf16
