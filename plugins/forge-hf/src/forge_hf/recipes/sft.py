"""Recipe ``sft``: supervised fine-tuning of a causal LM with TRL's SFTTrainer, LoRA (default) or full.

    forge run --recipe sft --model smollm2-135m-instruct --data train.jsonl --set max_steps=100

Data (docs/data.md): chat ``messages`` (OpenAI style, tool calls included), ShareGPT ``conversations``, Alpaca
``instruction``/``input``/``output``, ``input``/``output``, ``prompt``/``completion`` or plain ``text``, detected
per file (``format`` overrides). Chat-like formats train on the last assistant turn; the tokenizer's chat template
formats them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from forge.artifacts import ArtifactResult
from forge.config import DataSources
from forge.run.context import RunContext
from pydantic import Field

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

EXAMPLE_CHAT = str(Path(__file__).resolve().parents[1] / "example_data" / "chat.jsonl")
DEFAULT_MODEL = "smollm2-135m-instruct"


class SFTRecipeConfig(TrainingFields, LoraFields):
    """Config of ``sft`` (and, with other defaults, ``qlora``). Defaults: packaged SmolLM2 and example chat data."""

    model: str = Field(DEFAULT_MODEL, description="hub id, local model directory, .gguf file or alias")
    data: DataSources = Field(  # type: ignore[assignment]  # one source or a mixture
        EXAMPLE_CHAT, description="JSONL/JSON/CSV/Parquet/Arrow file or Hub dataset name, or a mixture: a list of "
        "{path, split, subset, weight | samples, format} (docs/data.md)")
    eval_data: DataSources | None = Field(None, description="evaluation data (one source or a mixture); "
                                                            "replaces the eval_split hold-out")
    format: training_data.SftFormat = Field(
        "auto", description="data format; auto: detected from the first record's fields (docs/data.md)")
    pii: training_data.PiiPolicy = Field(
        "warn", description="PII and secrets in the data (forge data scan): warn, ignore, block (fail at the data "
        "checks) or redact (train on a redacted copy, kept in the run directory with its sha256 and parent)")

    max_length: int = Field(1024, ge=8, le=MAX_TOKENS, description="truncate tokenized examples to this many tokens")
    packing: bool | Literal["auto"] = Field(
        "auto", description="pack several examples into each max_length sequence (bfd: padding-free, examples kept "
        "whole); auto: on with a CUDA GPU, off on CPU (docs/benchmarks.md)")
    packing_strategy: Literal["bfd", "wrapped"] = "bfd"
    padding_free: bool = Field(False, description="no padding: needs an attention that takes position_ids")
    completion_only_loss: bool = Field(True, description="loss on completions only (prompt tokens masked)")
    load_in_4bit: bool = Field(False, description="load the base in 4-bit NF4 (bitsandbytes); qlora sets it")


def prepare(ctx: RunContext, config: SFTRecipeConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Read and validate the data; return (train, eval) records in a TRL dataset format, and that format."""
    train, held, kind = training_data.prepare_records(ctx, config, "sft")
    train = [training_data.to_prompt_completion(r) if "messages" in r else r for r in train]
    held = [training_data.to_prompt_completion(r) if "messages" in r else r for r in held]
    return train, held, kind


def check_data(config: SFTRecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the data exactly as :func:`prepare` does, keeping nothing."""
    training_data.check_records(config, "sft", log)


def resolve_packing(config: SFTRecipeConfig) -> bool:
    """``packing: auto`` is on where it was measured to win: with a CUDA GPU (docs/benchmarks.md); off on CPU, where
    attention over full packed rows costs more than the padding it saves."""
    if config.packing != "auto":
        return bool(config.packing)
    import torch

    return torch.cuda.is_available()


def token_lengths(tokenizer: Any, records: list[dict[str, Any]]) -> list[int]:
    lengths = []
    for record in records:
        if "text" in record:
            lengths.append(len(tokenizer(record["text"])["input_ids"]))
        elif isinstance(record["prompt"], list):
            text = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=False)
            lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        else:
            lengths.append(len(tokenizer(record["prompt"] + record["completion"])["input_ids"]))
    return lengths


@stops_at_once
def train(ctx: RunContext, config: SFTRecipeConfig) -> ArtifactResult:
    train_records, eval_records, kind = prepare(ctx, config)
    loaded = ctx.load_model(causal_lm_request(config, config.load_in_4bit, config.max_length, recipe="sft"))
    # imported after the provider ran: Unsloth must patch transformers before trl's trainers import it
    from trl import SFTConfig, SFTTrainer

    tokenizer = loaded.tokenizer
    if kind != "text" and not getattr(tokenizer, "chat_template", None) and isinstance(
        train_records[0].get("prompt"), list
    ):
        from forge.errors import DataError

        raise DataError(f"{training_data.describe_data(config.data)}: chat data needs a tokenizer with a chat "
                        f"template; {config.model} has none")
    lengths = token_lengths(tokenizer, train_records + eval_records)
    stats = {"format": kind, "train_records": len(train_records), "eval_records": len(eval_records),
             "tokens": training_data.length_stats(lengths), "truncated": sum(n > config.max_length for n in lengths)}
    ctx.log(f"token lengths: {stats['tokens']}; {stats['truncated']} longer than max_length={config.max_length}")
    ctx.record(dataset=stats)
    packing = resolve_packing(config)
    if config.packing == "auto":
        ctx.record(resolved={"packing": packing})
    args = SFTConfig(
        **training_arguments(ctx, config, bool(eval_records), loaded.model),
        max_length=config.max_length,
        packing=packing,
        packing_strategy=config.packing_strategy,
        padding_free=config.padding_free,
        completion_only_loss=config.completion_only_loss if kind != "text" else None,
    )
    trainer = SFTTrainer(args=args, **trainer_inputs(ctx, config, loaded, train_records, eval_records))
    result = train_with_resume(ctx, trainer)
    if ctx.should_stop:
        return ArtifactResult(kind="causal-lm-adapter" if config.use_peft else "causal-lm")
    metrics = {"train_loss": float(result.training_loss), "train_runtime": float(result.metrics["train_runtime"])}
    if eval_records:
        ctx.log(f"evaluating on {len(eval_records):,} held-out records")
        evaluation = trainer.evaluate()
        metrics["eval_loss"] = float(evaluation["eval_loss"])
        ctx.log_metrics({"eval_loss": metrics["eval_loss"]}, step=trainer.state.global_step)
    extra = save_causal_lm(ctx, trainer, tokenizer, config, loaded.info, adapter=config.use_peft,
                           heldout=eval_records)
    if config.load_in_4bit:
        extra["quantization"] = "nf4-4bit base (adapter trained against it; merge onto the full-precision base)"
    return ArtifactResult(kind="causal-lm-adapter" if config.use_peft else "causal-lm", metrics=metrics, extra=extra)
