"""Recipe ``embed``: fine-tune a sentence-embedding model with sentence-transformers on pairs or triplets.

    forge run --recipe embed --model minilm-l6 --data pairs.jsonl --set max_steps=200
    forge run --recipe embed --data qa.csv --set anchor_column=question --set positive_column=answer

Data: JSONL/JSON/CSV/Parquet records ``{anchor, positive}`` or ``{anchor, positive, negative}`` (column names set by
``anchor_column`` / ``positive_column`` / ``negative_column``). Loss: MultipleNegativesRankingLoss (in-batch
negatives: every other positive in the batch, and every given negative, is a negative for an anchor), or its cached
(GradCache) form when ``mini_batch_size`` is set, for large batches in little memory. Batches hold no duplicate
texts (``batch_sampler: no_duplicates``), so an in-batch "negative" is never a copy of the positive.

Metrics on the held-out split, before and after training: ``recall_at_K`` and ``mrr`` (each held-out anchor
retrieves among all held-out positives and negatives; see :mod:`forge_hf.retrieval`), logged as
``eval_base_recall_at_10`` ... and ``eval_recall_at_10`` .... The artifact (``sentence-embedder``) is a
sentence-transformers model directory with the held-out split (``heldout.jsonl``) that ``forge eval --suite
retrieval`` and the ONNX exporter's parity check use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from forge.artifacts import ArtifactResult
from forge.config import DataSource
from forge.errors import DataError
from forge.run.context import RunContext
from pydantic import Field, field_validator, model_validator

from forge_hf import training_data
from forge_hf.recipes.common import (
    MAX_TOKENS,
    TrainingFields,
    forge_callback,
    seed_everything,
    stops_at_once,
    train_with_resume,
)
from forge_hf.retrieval import DEFAULT_KS, Pairs, evaluate_embeddings, read_pairs


class EmbedConfig(TrainingFields):
    model: str = Field("minilm-l6", description="sentence-transformers model or plain encoder (mean pooling "
                       "added): hub id, local dir or alias (minilm-l6: all-MiniLM-L6-v2)")
    anchor_column: str = Field("anchor", min_length=1, description="the query / first text of a pair")
    positive_column: str = Field("positive", min_length=1, description="the text that belongs with the anchor")
    negative_column: str = Field("negative", min_length=1, description="a hard negative (optional: when any record "
                                 "has it, every record needs it)")
    max_length: int | None = Field(None, ge=8, le=MAX_TOKENS, description="tokens per text (default: the model's "
                                   "max_seq_length)")
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the training data (when max_steps is -1)")
    per_device_train_batch_size: int = Field(32, ge=2, description="pairs per batch: each anchor's in-batch "
                                             "negatives are the other batch-size − 1 positives")
    per_device_eval_batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    warmup_steps: float = Field(0.1, ge=0, description="steps, or a fraction of training when < 1")
    eval_split: float = Field(0.1, ge=0, lt=1, description="share of pairs held out for recall@k / MRR (0: none)")
    eval_data: DataSource | None = Field(None, description="held-out pairs/triplets file for recall@k / MRR (same "
                                         "columns; instead of eval_split)")
    scale: float = Field(20.0, gt=0, description="MultipleNegativesRankingLoss scale (inverse temperature) on "
                         "cosine similarities")
    mini_batch_size: int | None = Field(None, ge=1, description="use CachedMultipleNegativesRankingLoss with this "
                                        "mini-batch (large batches in little memory)")
    batch_sampler: Literal["no_duplicates", "batch_sampler"] = Field(
        "no_duplicates", description="no_duplicates: no text twice in a batch (a false in-batch negative)")
    retrieval_k: list[int] = Field(list(DEFAULT_KS), min_length=1, description="k of the recall@k metrics")
    max_chars: int = Field(20_000, ge=1, description="texts longer than this are a data error")

    @field_validator("retrieval_k")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError("each k must be at least 1")
        return sorted(set(value))

    @model_validator(mode="after")
    def _distinct_columns(self) -> EmbedConfig:
        names = [self.anchor_column, self.positive_column, self.negative_column]
        if len(set(names)) < 3:
            raise ValueError(f"anchor_column, positive_column and negative_column must differ, got {names}")
        return self


def read_training_pairs(config: EmbedConfig) -> Pairs:
    if not isinstance(config.data, str):
        raise DataError("data: the embed recipe reads one source (a file or Hub dataset), not a mixture")
    pairs = read_pairs(config.data, config.anchor_column, config.positive_column, config.negative_column,
                       config.max_chars)
    if len(pairs.records) < 2:
        raise DataError(f"{pairs.source}: {len(pairs.records)} pair; in-batch negatives need at least two")
    return pairs


def read_eval_pairs(config: EmbedConfig) -> Pairs | None:
    if config.eval_data is None:
        return None
    return read_pairs(config.eval_data, config.anchor_column, config.positive_column, config.negative_column,
                      config.max_chars)


def check_data(config: EmbedConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the pairs exactly as the run does."""
    pairs = read_training_pairs(config)
    log(f"data: {len(pairs.records):,} {'triplets' if pairs.triplets else 'pairs'} from "
        f"{training_data.display_name(str(config.data))}; checked")
    held = read_eval_pairs(config)
    if held is not None:
        log(f"eval data: {len(held.records):,} records from {training_data.display_name(held.source)}; checked")


def load_sentence_transformer(model: str, trust_remote_code: bool = False) -> tuple[Any, dict[str, Any]]:
    """A SentenceTransformer from a hub id, local directory or forge alias (safetensors only), and where it came from.
    A plain transformers encoder gets mean pooling."""
    from forge.errors import ForgeError

    from forge_hf.provider import resolve_model

    source, info = resolve_model(model)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ForgeError("the embed recipe needs sentence-transformers: pip install 'forge-hf[embed]'") from None
    try:
        loaded = SentenceTransformer(source, device=None, trust_remote_code=trust_remote_code,
                                     model_kwargs={"use_safetensors": True})
    except OSError as exc:
        raise ForgeError(f"model {model}: {str(exc).splitlines()[0]}") from None
    return loaded, {**info, "model_source": source}


def describe(model: Any) -> dict[str, Any]:
    """What the artifact's manifest says about a SentenceTransformer: dimension, pooling, normalisation."""
    names = [type(module).__name__ for module in model]
    pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
    dimension = getattr(model, "get_embedding_dimension", None) or getattr(model, "get_sentence_embedding_dimension",
                                                                           None)
    return {"dimension": int(dimension()) if callable(dimension) else None,
            "pooling": getattr(pooling, "pooling_mode", None) if pooling is not None else None,
            "normalize": "Normalize" in names, "modules": names, "similarity": "cosine"}


def encoder(model: Any, batch_size: int) -> Callable[[list[str]], Any]:
    def encode(texts: list[str]) -> Any:
        return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    return encode


@stops_at_once
def train(ctx: RunContext, config: EmbedConfig) -> ArtifactResult:
    pairs = read_training_pairs(config)
    evaluation = read_eval_pairs(config)
    if evaluation is not None:
        train_records, held = pairs.records, evaluation.records
    else:
        train_records, held = training_data.split_holdout(pairs.records, config.eval_split, config.seed)
    kind = "triplets" if pairs.triplets else "pairs"
    ctx.log(f"data: {len(pairs.records):,} {kind} from {training_data.display_name(str(config.data))}; "
            f"train {len(train_records):,}, held out {len(held):,}")
    if len(train_records) < 2:
        raise DataError(f"{pairs.source}: {len(train_records)} training pair after the hold-out; in-batch "
                        "negatives need at least two (more data, or a smaller eval_split)")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses

    from forge_hf.recipes.common import check_device, training_arguments

    check_device(config)
    seed_everything(config.seed)
    model, info = load_sentence_transformer(config.model, config.trust_remote_code)
    if config.max_length is not None:
        model.max_seq_length = config.max_length
    ctx.record(provider={"name": "sentence-transformers", **info})
    tokenizer = model.tokenizer
    lengths = [len(x) for x in tokenizer([r["anchor"] for r in pairs.records]
                                         + [r["positive"] for r in pairs.records], truncation=False)["input_ids"]]
    ctx.record(dataset={"format": kind, "train_records": len(train_records), "eval_records": len(held),
                        "tokens": training_data.length_stats(lengths),
                        "truncated": sum(n > model.max_seq_length for n in lengths)})

    metrics: dict[str, Any] = {}
    encode = encoder(model, config.per_device_eval_batch_size)
    if held:
        model.eval()
        before, _ = evaluate_embeddings(encode, held, config.retrieval_k)
        metrics.update({f"eval_base_{k}": v for k, v in before.items()})
        ctx.log_metrics({f"eval_base_{k}": v for k, v in before.items()}, step=0)
        ctx.log("held-out retrieval before training: " + _summary(before, config.retrieval_k))

    loss: Any
    if config.mini_batch_size is not None:
        loss = losses.CachedMultipleNegativesRankingLoss(model, scale=config.scale,
                                                         mini_batch_size=config.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model, scale=config.scale)
    arguments = training_arguments(ctx, config, False, model)
    arguments["batch_sampler"] = config.batch_sampler
    import torch

    if torch.cuda.is_available() and config.dtype != "fp32":  # fp32 weights, bf16/fp16 autocast (mixed precision)
        bf16 = config.dtype == "bf16" or (config.dtype == "auto" and torch.cuda.is_bf16_supported())
        arguments.update({"bf16": bf16, "fp16": not bf16})
    columns = ["anchor", "positive", *(["negative"] if pairs.triplets else [])]
    seed_everything(config.seed)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(**arguments),
        train_dataset=Dataset.from_list(train_records).select_columns(columns),
        loss=loss,
        callbacks=[forge_callback(ctx, config.nan_policy)],
    )
    result = train_with_resume(ctx, trainer)
    if ctx.should_stop:
        return ArtifactResult(kind="sentence-embedder")
    metrics["train_loss"] = float(result.training_loss)
    if held:
        model.eval()
        after, _ = evaluate_embeddings(encode, held, config.retrieval_k)
        metrics.update({f"eval_{k}": v for k, v in after.items()})
        ctx.log_metrics({f"eval_{k}": v for k, v in after.items()}, step=trainer.state.global_step)
        ctx.log("held-out retrieval after training: " + _summary(after, config.retrieval_k))
    extra: dict[str, Any] = {"base_model": config.model, "max_length": int(model.max_seq_length),
                             "columns": {"anchor": config.anchor_column, "positive": config.positive_column,
                                         "negative": config.negative_column},
                             "retrieval_k": config.retrieval_k, **describe(model)}
    if ctx.is_main:
        out = ctx.artifact_dir
        out.mkdir(parents=True, exist_ok=True)
        model.save(str(out), create_model_card=False)
        (out / "heldout.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held),
                                           encoding="utf-8")
    return ArtifactResult(kind="sentence-embedder", metrics=metrics, extra=extra)


def _summary(values: dict[str, float], ks: list[int]) -> str:
    return ", ".join([*(f"recall@{k} {values[f'recall_at_{k}']:.3f}" for k in ks), f"MRR {values['mrr']:.3f}"])
