"""Recipe ``kto``: Kahneman-Tversky optimization with TRL's KTOTrainer, LoRA by default. Learns from unpaired
feedback: each completion is marked desirable or undesirable, no pairs needed.

    forge run --recipe kto --model smollm2-135m-instruct --data feedback.jsonl --set max_steps=50

Data: ``prompt``, ``completion`` (strings, or chat messages) and ``label`` (``true``: desirable, ``false``:
undesirable; JSON booleans, or the words true/false in CSV). Preference data (``prompt``/``chosen``/``rejected``)
works too: each pair becomes one desirable and one undesirable example. Both kinds must be present. With LoRA the
reference model is the base with adapters disabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from forge.artifacts import ArtifactResult
from forge.errors import DataError
from forge.run.context import RunContext
from pydantic import Field, model_validator

from forge_hf import training_data
from forge_hf.recipes.common import (
    MAX_TOKENS,
    LoraFields,
    TrainingFields,
    causal_lm_request,
    stops_at_once,
    train_preference_model,
    trainer_inputs,
    training_arguments,
)


class KTORecipeConfig(TrainingFields, LoraFields):
    beta: float = Field(0.1, gt=0, description="strength of the KL penalty toward the reference model")
    desirable_weight: float = Field(1.0, gt=0, description="loss weight of desirable examples (raise it when they "
                                    "are fewer than the undesirable ones)")
    undesirable_weight: float = Field(1.0, gt=0, description="loss weight of undesirable examples")
    loss_type: Literal["kto", "apo_zero_unpaired"] = "kto"
    max_length: int = Field(1024, ge=8, le=MAX_TOKENS)
    learning_rate: float = Field(5e-5, gt=0)

    @model_validator(mode="after")
    def _kl_batch(self) -> KTORecipeConfig:
        # TRL estimates the KL term from mismatched pairs inside each batch: one example per batch has none
        if self.loss_type == "kto" and self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size: KTO needs at least 2 (the KL term is estimated within "
                             "each batch)")
        return self


def parse_label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def read_feedback(config: KTORecipeConfig) -> tuple[list[dict[str, Any]], str]:
    """Records ``{prompt, completion, label}`` and the data's format (``unpaired`` or ``preference``); every
    problem names file and line."""
    rows = training_data.read_rows(config.data)
    if not rows.records:
        raise DataError(f"{rows.source}: no records")
    if "label" not in rows.records[0] and "chosen" in rows.records[0]:
        records: list[dict[str, Any]] = []
        for record, where in zip(rows.records, rows.where, strict=True):
            try:
                pair = training_data.normalize(record, "preference")
            except training_data.Problem as exc:
                raise DataError(f"{where}: {exc}") from None
            records.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
            records.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
        return records, "preference"
    records = []
    for record, where in zip(rows.records, rows.where, strict=True):
        try:
            example = training_data.normalize(record, "prompt-completion")
        except training_data.Problem as exc:
            raise DataError(f"{where}: {exc}") from None
        if "label" not in record or record["label"] is None:
            raise DataError(f"{where}: missing field 'label' (true: desirable, false: undesirable)")
        label = parse_label(record["label"])
        if label is None:
            raise DataError(f"{where}: field 'label' must be a boolean (true: desirable, false: undesirable), "
                            f"got {record['label']!r}")
        records.append({**example, "label": label})
    desirable = sum(r["label"] for r in records)
    if desirable in (0, len(records)):
        raise DataError(f"{rows.source}: every label is {str(bool(desirable)).lower()}; KTO needs both desirable "
                        "(true) and undesirable (false) examples")
    return records, "unpaired"


def check_data(config: KTORecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the data exactly as the run does."""
    records, kind = read_feedback(config)
    desirable = sum(r["label"] for r in records)
    log(f"data: {len(records):,} {kind} examples ({desirable} desirable, {len(records) - desirable} undesirable) "
        f"from {training_data.display_name(str(config.data))}; checked")


@stops_at_once
def train(ctx: RunContext, config: KTORecipeConfig) -> ArtifactResult:
    records, kind = read_feedback(config)
    train_records, eval_records = training_data.split_holdout(records, config.eval_split, config.seed)
    desirable = sum(r["label"] for r in train_records)
    ctx.log(f"data: {len(records):,} {kind} examples ({desirable} desirable in train); train {len(train_records)}, "
            f"eval {len(eval_records)}")
    ctx.record(dataset={"format": kind, "train_records": len(train_records), "eval_records": len(eval_records),
                        "desirable": desirable, "undesirable": len(train_records) - desirable})
    loaded = ctx.load_model(causal_lm_request(config, max_length=config.max_length, recipe="kto"))
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(**training_arguments(ctx, config, bool(eval_records), loaded.model), beta=config.beta,
                     desirable_weight=config.desirable_weight, undesirable_weight=config.undesirable_weight,
                     loss_type=config.loss_type, max_length=config.max_length)
    trainer = KTOTrainer(args=args, **trainer_inputs(ctx, config, loaded, train_records, eval_records))
    return train_preference_model(ctx, config, trainer, loaded, eval_records,
                                  keep=lambda k: k.startswith(("eval_rewards", "eval_kl")) or k == "eval_loss")
