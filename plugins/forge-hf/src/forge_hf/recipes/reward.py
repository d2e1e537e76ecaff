"""Recipe ``reward``: a reward model (sequence-classification head with one output) trained on preference pairs
with TRL's RewardTrainer (Bradley-Terry loss: the chosen completion should score above the rejected one), LoRA by
default.

    forge run --recipe reward --model smollm2-135m-instruct --data prefs.jsonl --set max_steps=100 -o runs/rm

Data: the formats ``dpo`` reads (``prompt``/``chosen``/``rejected`` strings or chat messages, or ``chosen``/``rejected``
conversations sharing a prompt; docs/data.md). Metric: pairwise accuracy (share of held-out pairs where chosen
scores higher; chance is 0.5) and the mean margin. The artifact (kind ``reward-model``) is a plain transformers
sequence-classification model (LoRA merged in), with the held-out pairs (``heldout.jsonl``): served by
``forge serve`` at ``POST /score``, evaluated by ``forge eval --suite pairwise-accuracy``, and used by
``forge run --recipe rlhf --set reward_model=runs/rm``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from forge.artifacts import ArtifactResult
from forge.run.context import RunContext
from pydantic import Field

from forge_hf import training_data
from forge_hf.recipes.common import (
    MAX_TOKENS,
    LoraFields,
    PreferenceFields,
    classifier_request,
    forge_callback,
    peft_config,
    seed_everything,
    stops_at_once,
    train_with_resume,
    training_arguments,
)

HELDOUT_KEPT = 500


class RewardRecipeConfig(PreferenceFields, LoraFields):
    max_length: int = Field(512, ge=8, le=MAX_TOKENS, description="tokens of prompt + completion; longer pairs keep "
                            "their last tokens (the score is read at the end)")
    learning_rate: float = Field(1e-4, gt=0)
    head_learning_rate: float | None = Field(
        None, gt=0, description="learning rate of the new score head (default: 10 × learning_rate): the head starts "
        "from nothing, while LoRA only nudges the backbone")
    center_rewards_coefficient: float | None = Field(
        None, ge=0, description="pull mean rewards toward 0 (TRL's center_rewards_coefficient; e.g. 0.01)")
    eval_split: float = Field(0.1, ge=0, lt=1, description="share of pairs held out for pairwise accuracy (0: none)")


def prepare(ctx: RunContext, config: RewardRecipeConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    train, held, kind = training_data.prepare_records(ctx, config, "preference")
    ctx.record(dataset={"format": kind, "train_records": len(train), "eval_records": len(held)})
    return train, held, kind


def check_data(config: RewardRecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the pairs exactly as :func:`prepare` does, keeping nothing."""
    training_data.check_records(config, "preference", log)


def score_head(model: Any) -> tuple[str, Any]:
    """(name, module) of the model's one-output linear head (``score`` in decoder LMs, ``classifier`` in encoders)."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == 1 and \
                name.split(".")[0] in ("score", "classifier"):
            return name, module
    raise RuntimeError(f"{type(model).__name__}: no one-output score/classifier head found")


def init_score_head(model: Any) -> str:
    """A small start for the head, N(0, 1/(d+1)) as OpenRLHF does: the default N(0, 0.02) on hidden states of norm
    ~50 gives every sequence a random score of ~±1, noise that a short run cannot unlearn."""
    import torch

    name, head = score_head(model)
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=1 / (head.in_features + 1))
        if head.bias is not None:
            head.bias.zero_()
    return name


def with_head_learning_rate(trainer_class: Any, head: str, learning_rate: float) -> Any:
    """``trainer_class`` whose optimizer trains the score head's parameters (named ``head``, also as PEFT's
    ``modules_to_save`` copy) at ``learning_rate``, the rest as configured."""

    class HeadTrainer(trainer_class):
        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            optimizer = super().create_optimizer(*args, **kwargs)
            ids = {id(p) for n, p in self.model.named_parameters() if p.requires_grad and f".{head}." in f".{n}"}
            if not ids:
                raise RuntimeError(f"the score head {head!r} has no trainable parameters")
            moved = [p for group in optimizer.param_groups for p in group["params"] if id(p) in ids]
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in ids]
            optimizer.add_param_group({"params": moved, "lr": learning_rate, "weight_decay": 0.0})
            return optimizer

    return HeadTrainer


def is_chat(records: list[dict[str, Any]]) -> bool:
    return bool(records) and isinstance(records[0]["chosen"], list)


@stops_at_once
def train(ctx: RunContext, config: RewardRecipeConfig) -> ArtifactResult:
    from forge_hf.reward_model import KIND, Scorer, encode, pairwise

    train_records, eval_records, kind = prepare(ctx, config)
    loaded = ctx.load_model(classifier_request(config, ["reward"], recipe="reward"))
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    tokenizer, model = loaded.tokenizer, loaded.model
    model.config.pad_token_id = tokenizer.pad_token_id
    chat = is_chat(train_records)
    seed_everything(config.seed)
    head = init_score_head(model)
    head_lr = config.head_learning_rate or 10 * config.learning_rate

    def tokenized(records: list[dict[str, Any]]) -> Any:
        # Encoded here, not by the trainer: the same encoding as /score and rlhf, and over-long pairs are cut from
        # the left instead of dropped (TRL filters them out).
        return Dataset.from_list([
            {"chosen_ids": encode(tokenizer, r["prompt"], r["chosen"], config.max_length, chat),
             "rejected_ids": encode(tokenizer, r["prompt"], r["rejected"], config.max_length, chat)}
            for r in records])

    args = RewardConfig(**training_arguments(ctx, config, bool(eval_records), model), max_length=None,
                        center_rewards_coefficient=config.center_rewards_coefficient)
    seed_everything(config.seed)
    trainer = with_head_learning_rate(RewardTrainer, head, head_lr)(
        model=model, args=args, train_dataset=tokenized(train_records),
        eval_dataset=tokenized(eval_records) if eval_records else None, processing_class=tokenizer,
        peft_config=peft_config(config, "SEQ_CLS") if config.use_peft else None,
        callbacks=[forge_callback(ctx, config.nan_policy)])
    result = train_with_resume(ctx, trainer)
    if ctx.should_stop:
        return ArtifactResult(kind=KIND)
    trained: Any = trainer.model
    if config.use_peft:
        trained = trained.merge_and_unload()  # the artifact is a plain model: servable and loadable anywhere
    trained.eval()
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss)}
    if eval_records:
        scorer = Scorer(model=trained, tokenizer=tokenizer, max_length=config.max_length, chat=chat,
                        batch_size=config.per_device_eval_batch_size)
        chosen, rejected = pairwise(scorer, eval_records)
        wins = [float(c > r) for c, r in zip(chosen, rejected, strict=True)]
        metrics["eval_pairwise_accuracy"] = sum(wins) / len(wins)
        metrics["eval_margin"] = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(wins)
        ctx.log_metrics(metrics, step=trainer.state.global_step)
        ctx.log(f"held-out pairwise accuracy {metrics['eval_pairwise_accuracy']:.3f} on {len(wins)} pairs "
                f"(chance 0.5), mean margin {metrics['eval_margin']:.3f}")
    if ctx.is_main:
        out = ctx.artifact_dir
        out.mkdir(parents=True, exist_ok=True)
        trained.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        with (out / "heldout.jsonl").open("w", encoding="utf-8") as handle:
            for record in eval_records[:HELDOUT_KEPT]:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    extra = {"base_model": config.model, "base_model_source": loaded.info.get("model_source"),
             "max_length": config.max_length, "input_format": "chat" if chat else "text", "data_format": kind,
             "head_learning_rate": head_lr,
             **({"trained_with": "lora (merged)"} if config.use_peft else {})}
    return ArtifactResult(kind=KIND, metrics=metrics, extra=extra)
