"""Recipe ``grpo``: group relative policy optimization with TRL's GRPOTrainer, LoRA by default.

    forge run --recipe grpo --model smollm2-135m-instruct --data prompts.jsonl \
        --set 'reward_funcs=[answer, format]' --set max_steps=20

Data: ``prompt`` (string or chat messages) plus any columns the reward functions read (``answer`` for the
built-in ``answer`` reward), or chat ``messages`` whose last assistant message becomes ``answer``.
Rewards: ``format`` (regex ``format_pattern``), ``length`` (``target_length`` characters), ``answer`` (final
number equals the answer's), or ``package.module:function``. ``reward_model: RUN_OR_PATH`` adds a trained
``reward-model`` artifact (``forge run --recipe reward``) as one more reward (alone, when ``reward_funcs`` is not set).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forge.artifacts import ArtifactResult
from forge.run.context import RunContext
from pydantic import Field, field_validator, model_validator

from forge_hf import training_data
from forge_hf.recipes.common import (
    MAX_TOKENS,
    LoraFields,
    TrainingFields,
    causal_lm_request,
    save_causal_lm,
    stops_at_once,
    train_with_resume,
    trainer_inputs,
    training_arguments,
)
from forge_hf.rewards import BUILTINS, resolve_reward


def check_reward_model(ref: str | None) -> str | None:
    """``reward_model`` must name a reward-model artifact (run or artifact directory): checked on its manifest, so
    a wrong path fails at validation, before any model loads."""
    if ref is None:
        return None
    from forge.errors import ForgeError

    from forge_hf.reward_model import reward_artifact

    try:
        reward_artifact(ref)
    except ForgeError as exc:
        raise ValueError(str(exc)) from None
    return ref


class GRPORecipeConfig(TrainingFields, LoraFields):
    reward_funcs: list[str] = Field(["format"], min_length=1, description="built-in names or module:function")
    reward_weights: list[float] | None = Field(None, min_length=1, description="one weight per reward function "
                                               "(default: all 1)")
    format_pattern: str = Field(r"####\s*-?[\d,.]+\s*$", description="regex for the 'format' reward")
    target_length: int = Field(200, ge=1, le=10_000_000, description="characters, for the 'length' reward")
    num_generations: int = Field(4, ge=2, le=1024, description="completions sampled per prompt (the group)")
    max_completion_length: int = Field(64, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.0, ge=0, description="KL coefficient (0: no reference model)")
    learning_rate: float = Field(1e-5, gt=0)
    reward_model: str | None = Field(None, description="a reward-model run or artifact directory (recipe reward); "
                                     "scores every completion as one more reward")

    @field_validator("reward_model")
    @classmethod
    def _reward_model_kind(cls, ref: str | None) -> str | None:
        return check_reward_model(ref)

    @field_validator("format_pattern")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        import re

        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _consistent(self) -> GRPORecipeConfig:
        if self.reward_model is not None and "reward_funcs" not in self.model_fields_set:
            self.reward_funcs = []  # the reward model alone, unless rule-based rewards are asked for too
        count = len(self.reward_funcs) + (self.reward_model is not None)
        if self.reward_weights is not None and len(self.reward_weights) != count:
            raise ValueError(f"reward_weights: {len(self.reward_weights)} weights for {count} rewards "
                             "(reward_funcs, then the reward_model)")
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(f"num_generations: per_device_train_batch_size × gradient_accumulation_steps ({batch}) "
                             f"must be a multiple of num_generations ({self.num_generations})")
        return self

    @field_validator("reward_funcs")
    @classmethod
    def _known_rewards(cls, names: list[str]) -> list[str]:
        # Only the spelling is checked here: user reward modules are code, imported when training starts (never at
        # validation or --dry-run), and an import failure then is a one-line config error before the model loads.
        for name in names:
            if name in BUILTINS:
                continue
            module, sep, function = name.partition(":")
            if not sep or not function or not all(p.isidentifier() for p in module.split(".")) \
                    or not function.isidentifier():
                raise ValueError(f"unknown reward '{name}' (built-ins: {', '.join(BUILTINS)}; or module:function)")
        return names


def read_prompts(config: GRPORecipeConfig) -> list[dict[str, Any]]:
    rows = training_data.read_rows(config.data)
    if "messages" in rows.records[0]:
        training_data.validate(rows, training_data.check_sft("messages"))
        return [{"prompt": r["messages"][:-1], "answer": r["messages"][-1]["content"]} for r in rows.records]
    training_data.validate(rows, training_data.check_fields("prompt"))
    return rows.records


def prepare(ctx: RunContext, config: GRPORecipeConfig) -> list[dict[str, Any]]:
    records = read_prompts(config)
    ctx.log(f"data: {len(records):,} prompts from {training_data.display_name(config.data)}")
    ctx.record(dataset={"format": "prompts", "train_records": len(records)})
    return records


def check_data(config: GRPORecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the prompts exactly as :func:`prepare` does."""
    records = read_prompts(config)
    log(f"data: {len(records):,} prompts from {training_data.display_name(config.data)}; checked")


def load_rewards(config: GRPORecipeConfig) -> list[Any]:
    """Import the reward functions (user modules run here, when training starts, not at validation)."""
    from forge.errors import ConfigError

    rewards = []
    for name in config.reward_funcs:
        try:
            rewards.append(resolve_reward(name, config.format_pattern, config.target_length))
        except ImportError as exc:
            raise ConfigError(f"reward_funcs: reward '{name}': cannot import {name.partition(':')[0]} ({exc})") \
                from None
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(f"reward_funcs: reward '{name}': {exc}") from None
    return rewards


def add_reward_model(ctx: RunContext, config: GRPORecipeConfig, rewards: list[Any]) -> None:
    """Append the reward model's scorer to ``rewards`` (loaded before the policy: a broken artifact fails first)."""
    if config.reward_model is None:
        return
    from forge_hf.reward_model import load_scorer, reward_artifact, reward_function

    artifact = reward_artifact(config.reward_model)
    ctx.log(f"reward model: {artifact.path} (base {artifact.manifest.get('base_model')})")
    scorer = load_scorer(artifact.path, artifact.manifest, batch_size=config.per_device_train_batch_size)
    rewards.append(reward_function(scorer))
    ctx.record(reward_model={"reference": config.reward_model, "path": str(artifact.path.resolve()),
                             "base_model": artifact.manifest.get("base_model")})


def train_online(ctx: RunContext, config: GRPORecipeConfig, loaded: Any, records: list[dict[str, Any]],
                 rewards: list[Any], config_class: Any, trainer_class: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Train with one of TRL's online trainers (GRPO, RLOO: the same sampling options) and resume support:
    ``(trainer, train result, the logged steps that carry a reward)``."""
    arguments = training_arguments(ctx, config, False, loaded.model)  # batch vs num_generations: checked in config
    args = config_class(**arguments, num_generations=config.num_generations,
                        max_completion_length=config.max_completion_length, temperature=config.temperature,
                        beta=config.beta, reward_weights=config.reward_weights)
    trainer = trainer_class(args=args, reward_funcs=rewards, **trainer_inputs(ctx, config, loaded, records))
    result = train_with_resume(ctx, trainer)
    return trainer, result, [h for h in trainer.state.log_history if "reward" in h]


@stops_at_once
def train(ctx: RunContext, config: GRPORecipeConfig) -> ArtifactResult:
    records = prepare(ctx, config)
    rewards = load_rewards(config)
    add_reward_model(ctx, config, rewards)
    loaded = ctx.load_model(causal_lm_request(config, recipe="grpo"))
    # imported after the provider ran: Unsloth must patch transformers before trl's trainers import it
    from trl import GRPOConfig, GRPOTrainer

    trainer, result, history = train_online(ctx, config, loaded, records, rewards, GRPOConfig, GRPOTrainer)
    kind = "causal-lm-adapter" if config.use_peft else "causal-lm"
    if ctx.should_stop:
        return ArtifactResult(kind=kind)
    metrics = {"train_loss": float(result.training_loss)}
    if history:
        metrics["final_reward"] = float(history[-1]["reward"])
    extra = save_causal_lm(ctx, trainer, loaded.tokenizer, config, loaded.info, adapter=config.use_peft)
    extra["rewards"] = config.reward_funcs + (["reward_model"] if config.reward_model else [])
    if config.reward_model:
        extra["reward_model"] = config.reward_model
    return ArtifactResult(kind=kind, metrics=metrics, extra=extra)
