"""Recipe ``dpo``: direct preference optimization with TRL's DPOTrainer, LoRA by default.

    forge run --recipe dpo --model smollm2-135m-instruct --data prefs.jsonl --set beta=0.1 --set max_steps=50

Data: ``prompt``, ``chosen``, ``rejected``, each a string or a list of chat messages, or ``chosen``/``rejected`` as
full conversations sharing a prompt (chat-pair; docs/data.md). With LoRA the reference
model is the base with adapters disabled (no second copy in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from forge.artifacts import ArtifactResult
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


class DPORecipeConfig(PreferenceFields, LoraFields):
    beta: float = Field(0.1, gt=0, description="strength of the KL penalty toward the reference model")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust"] = "sigmoid"
    max_length: int = Field(1024, ge=8, le=MAX_TOKENS)
    learning_rate: float = Field(5e-5, gt=0)


def prepare(ctx: RunContext, config: DPORecipeConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train, held, kind = training_data.prepare_records(ctx, config, "preference")
    ctx.record(dataset={"format": kind, "train_records": len(train), "eval_records": len(held)})
    return train, held


def check_data(config: DPORecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the data exactly as :func:`prepare` does, keeping nothing."""
    training_data.check_records(config, "preference", log)


@stops_at_once
def train(ctx: RunContext, config: DPORecipeConfig) -> ArtifactResult:
    train_records, eval_records = prepare(ctx, config)
    loaded = ctx.load_model(causal_lm_request(config, max_length=config.max_length, recipe="dpo"))
    # imported after the provider ran: Unsloth must patch transformers before trl's trainers import it
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**training_arguments(ctx, config, bool(eval_records), loaded.model), beta=config.beta,
                     loss_type=[config.loss_type], max_length=config.max_length)
    trainer = DPOTrainer(args=args, **trainer_inputs(ctx, config, loaded, train_records, eval_records))
    return train_preference_model(ctx, config, trainer, loaded, eval_records,
                                  keep=lambda k: k.startswith("eval_rewards") or k == "eval_loss")
