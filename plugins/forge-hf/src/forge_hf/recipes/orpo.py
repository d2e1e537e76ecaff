"""Recipe ``orpo``: odds-ratio preference optimization, SFT and preference alignment in one loss with no reference
model, on TRL's ORPOTrainer (which TRL 1.x keeps in ``trl.experimental.orpo``), LoRA by default.

    forge run --recipe orpo --model smollm2-135m-instruct --data prefs.jsonl --set beta=0.1 --set max_steps=50

Data: the formats ``dpo`` reads (``prompt``/``chosen``/``rejected`` strings or chat messages, or ``chosen``/
``rejected`` conversations sharing a prompt; docs/data.md). ``beta`` is the paper's λ, the weight of the odds-ratio
term beside the SFT loss on the chosen completion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forge.artifacts import ArtifactResult
from forge.errors import ForgeError
from forge.run.context import RunContext
from pydantic import Field

from forge_hf import training_data
from forge_hf.recipes.common import (
    MAX_TOKENS,
    LoraFields,
    PreferenceFields,
    causal_lm_request,
    stops_at_once,
    train_preference_model,
    trainer_inputs,
    training_arguments,
)


class ORPORecipeConfig(PreferenceFields, LoraFields):
    beta: float = Field(0.1, gt=0, description="λ: weight of the odds-ratio (preference) term beside the SFT loss")
    max_length: int = Field(1024, ge=8, le=MAX_TOKENS, description="tokens of prompt + completion")
    learning_rate: float = Field(8e-6, gt=0)


def trainer_classes() -> tuple[Any, Any]:
    """ORPOConfig and ORPOTrainer wherever the installed TRL keeps them (``trl`` before 0.20ish, then
    ``trl.experimental.orpo``); a one-line error when it has neither."""
    try:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    except ImportError:
        try:
            from trl import ORPOConfig, ORPOTrainer  # type: ignore[attr-defined,no-redef]
        except ImportError:
            import trl

            raise ForgeError(f"recipe orpo: the installed TRL ({trl.__version__}) has no ORPOTrainer (looked in "
                             "trl.experimental.orpo and trl); install a TRL that has it") from None
    return ORPOConfig, ORPOTrainer


def check_data(config: ORPORecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the pairs exactly as the run does, keeping nothing."""
    training_data.check_records(config, "preference", log)


@stops_at_once
def train(ctx: RunContext, config: ORPORecipeConfig) -> ArtifactResult:
    train_records, eval_records, kind = training_data.prepare_records(ctx, config, "preference")
    ctx.record(dataset={"format": kind, "train_records": len(train_records), "eval_records": len(eval_records)})
    import warnings

    with warnings.catch_warnings():  # TRL warns that experimental APIs may change: the docs say where it lives
        warnings.simplefilter("ignore")
        orpo_config, orpo_trainer = trainer_classes()
    loaded = ctx.load_model(causal_lm_request(config, max_length=config.max_length, recipe="orpo"))
    args = orpo_config(**training_arguments(ctx, config, bool(eval_records), loaded.model), beta=config.beta,
                       max_length=config.max_length)
    trainer = orpo_trainer(args=args, **trainer_inputs(ctx, config, loaded, train_records, eval_records))
    return train_preference_model(ctx, config, trainer, loaded, eval_records,
                                  keep=lambda k: k.startswith(("eval_rewards", "eval_log_odds"))
                                  or k in ("eval_loss", "eval_nll_loss"))
