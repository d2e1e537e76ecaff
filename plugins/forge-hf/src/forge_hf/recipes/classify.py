"""Recipe ``classify``: sequence classification (binary or multi-class) with transformers' Trainer.

    forge run --recipe classify --model minilm-l6 --data reviews.csv --set num_train_epochs=3
    forge run --recipe classify --model smollm2-135m-instruct --data reviews.csv   # an LLM: LoRA + a new head

Encoders (BERT-like) are fully fine-tuned by default. Decoder backbones (causal LMs: Llama, Qwen, SmolLM2...) get a
sequence-classification head (the last non-padding token's hidden state → logits) and LoRA adapters by default
(``use_peft``; the head is trained in full, PEFT's ``modules_to_save``); a tokenizer without a pad token pads with
EOS, and the model config learns that id, so batches of different lengths classify the right token. A LoRA run
writes a ``sequence-classifier-adapter`` (adapter + head, served and evaluated as is, merged in memory);
``forge export RUN --format merged`` turns it into a plain ``sequence-classifier``, ``--format onnx`` exports it.

Data: CSV/TSV/JSONL/Parquet with a text column and a label column (label names, or integer ids). Metrics on the
held-out split: accuracy, macro-F1 and the confusion matrix (also ``confusion_matrix.png``). The artifact
(``sequence-classifier``) keeps the label names and the held-out split (``heldout.jsonl``, used by exporters to
measure accuracy after quantization).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from forge.artifacts import ArtifactResult
from forge.errors import DataError
from forge.run.context import RunContext
from pydantic import Field, field_validator, model_validator

from forge_hf import training_data
from forge_hf.recipes.common import (
    MAX_TOKENS,
    LoraFields,
    TrainingFields,
    classifier_request,
    forge_callback,
    peft_config,
    seed_everything,
    stops_at_once,
    train_with_resume,
    training_arguments,
)

LORA_LEARNING_RATE = 2e-4  # the learning rate a LoRA run takes when the config names none (5e-5 is for full tuning)


class ClassifyConfig(TrainingFields, LoraFields):
    model: str = Field("minilm-l6", description="encoder or decoder (causal LM) backbone: hub id, local dir or alias "
                       "(minilm-l6: all-MiniLM-L6-v2; smollm2-135m-instruct)")
    use_peft: bool | None = Field(  # type: ignore[assignment]  # None: chosen by the backbone
        None, description="train LoRA adapters and the head (default: on for decoder backbones, off for encoders)")
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    label_names: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=2, description="names for integer labels 0..n-1, or the label order (at least two, distinct)")
    max_length: int = Field(128, ge=8, le=MAX_TOKENS)
    num_train_epochs: float = Field(3.0, gt=0, description="passes over the training data (when max_steps is -1)")
    per_device_train_batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(5e-5, gt=0, description=f"default 5e-5; {LORA_LEARNING_RATE:g} with LoRA")
    eval_split: float = Field(0.2, ge=0, lt=1)
    max_chars: int = Field(20_000, ge=1, description="texts longer than this are a data error")

    @field_validator("label_names")
    @classmethod
    def _distinct(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) < len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"'{repeated}' is named twice; label names must be distinct")
        return names

    @model_validator(mode="after")
    def _two_columns(self) -> ClassifyConfig:
        if self.text_column == self.label_column:
            raise ValueError(f"label_column: '{self.label_column}' is also the text_column")
        return self


def check_data(config: ClassifyConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: read and check the texts and labels exactly as the run does."""
    texts, _, names, _ = read_labelled(config)
    log(f"data: {len(texts):,} labelled texts ({len(names)} labels) from "
        f"{training_data.display_name(str(config.data))}; checked")


def read_labelled(config: ClassifyConfig) -> tuple[list[str], list[int], list[str], list[str]]:
    """Texts, label ids, label names and record locations; every problem names file and line."""
    rows = training_data.read_rows(config.data)
    text_col, label_col = config.text_column, config.label_column

    def check(record: dict[str, Any]) -> str | None:
        if text_col not in record or record[text_col] is None:
            return f"missing field '{text_col}'"
        if not isinstance(record[text_col], str):
            return f"field '{text_col}' must be text, got {type(record[text_col]).__name__}"
        if not record[text_col].strip():
            return f"field '{text_col}' is empty"
        if len(record[text_col]) > config.max_chars:
            return f"field '{text_col}' is {len(record[text_col])} characters (max_chars: {config.max_chars})"
        if label_col not in record or record[label_col] in (None, ""):
            return f"missing field '{label_col}'"
        if not isinstance(record[label_col], (str, int)) or isinstance(record[label_col], bool):
            return f"field '{label_col}' must be a label name or an integer id"
        return None

    training_data.validate(rows, check)
    raw = [r[label_col] for r in rows.records]
    as_ints = all(isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()) for v in raw)
    if as_ints:
        ids = [int(v) for v in raw]
        count = max(ids) + 1
        names = config.label_names or [str(i) for i in range(count)]
        for value, where in zip(ids, rows.where, strict=True):
            if value < 0 or value >= len(names):
                raise DataError(f"{where}: label id {value} is outside 0..{len(names) - 1}")
    else:
        found = sorted({str(v) for v in raw})
        names = config.label_names or found
        unknown = [v for v in found if v not in names]
        if unknown:
            where = rows.where[[str(v) for v in raw].index(unknown[0])]
            raise DataError(f"{where}: label '{unknown[0]}' is not in label_names ({', '.join(names)})")
        ids = [names.index(str(v)) for v in raw]
    if len(set(ids)) < 2:
        raise DataError(f"{rows.source}: every record has the same label; a classifier needs at least two")
    return [r[text_col] for r in rows.records], ids, names, rows.where


def confusion(labels: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def classification_metrics(labels: np.ndarray, predicted: np.ndarray, n: int) -> dict[str, Any]:
    matrix = confusion(labels, predicted, n)
    f1s = []
    for k in range(n):
        tp = matrix[k, k]
        precision = tp / matrix[:, k].sum() if matrix[:, k].sum() else 0.0
        recall = tp / matrix[k, :].sum() if matrix[k, :].sum() else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {"accuracy": float((labels == predicted).mean()), "macro_f1": float(np.mean(f1s)),
            "confusion_matrix": matrix.tolist()}


def plot_confusion(path: Path, matrix: list[list[int]], names: list[str],
                   title: str = "held-out confusion matrix") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    size = 1.2 + 0.6 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > values.max() / 2 else "black")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@stops_at_once
def train(ctx: RunContext, config: ClassifyConfig) -> ArtifactResult:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    texts, ids, names, _ = read_labelled(config)
    records = [{"text": t, "label": i} for t, i in zip(texts, ids, strict=True)]
    train_records, held = training_data.split_holdout(records, config.eval_split, config.seed)
    ctx.log(f"data: {len(records)} records, {len(names)} labels ({', '.join(names)}); "
            f"train {len(train_records)}, held out {len(held)}")
    loaded = ctx.load_model(classifier_request(config, names))
    tokenizer = loaded.tokenizer
    model = loaded.model
    decoder = is_decoder(model.config)
    if model.config.pad_token_id is None:  # decoders classify the last non-pad token: the model must know the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    use_peft = decoder if config.use_peft is None else config.use_peft
    if use_peft and "learning_rate" not in config.model_fields_set:
        config = config.model_copy(update={"learning_rate": LORA_LEARNING_RATE})
    if use_peft:
        from peft import get_peft_model

        seed_everything(config.seed)  # LoRA weights and the new head start from the run's seed
        model = get_peft_model(model, peft_config(config, "SEQ_CLS"))
        trainable, total = (sum(p.numel() for p in model.parameters() if p.requires_grad),
                            sum(p.numel() for p in model.parameters()))
        ctx.log(f"{'decoder' if decoder else 'encoder'} backbone; LoRA r={config.lora_r} on "
                f"{config.lora_target_modules}, head trained in full: {trainable:,} of {total:,} parameters "
                f"trainable, learning rate {config.learning_rate:g}")

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(batch["text"], truncation=True, max_length=config.max_length)

    lengths = [len(x) for x in tokenizer([r["text"] for r in records], truncation=False)["input_ids"]]
    ctx.record(dataset={"format": "classification", "labels": names, "train_records": len(train_records),
                        "eval_records": len(held), "tokens": training_data.length_stats(lengths),
                        "truncated": sum(n > config.max_length for n in lengths),
                        "label_counts": {n: ids.count(i) for i, n in enumerate(names)}})
    train_set = Dataset.from_list(train_records).map(tokenize, batched=True, remove_columns=["text"])
    eval_set = Dataset.from_list(held).map(tokenize, batched=True, remove_columns=["text"]) if held else None

    def compute_metrics(prediction: Any) -> dict[str, float]:
        result = classification_metrics(np.asarray(prediction.label_ids), prediction.predictions.argmax(-1),
                                        len(names))
        return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}

    seed_everything(config.seed)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**training_arguments(ctx, config, bool(held), model)),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[forge_callback(ctx, config.nan_policy)],
    )
    result = train_with_resume(ctx, trainer)
    kind = "sequence-classifier-adapter" if use_peft else "sequence-classifier"
    if ctx.should_stop:
        return ArtifactResult(kind=kind)
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss)}
    from forge_hf.base_model import base_model_fields

    extra: dict[str, Any] = {"labels": names, **base_model_fields(config.model), "max_length": config.max_length,
                             "backbone": "decoder" if decoder else "encoder",
                             "pad_token_id": model.config.pad_token_id}
    if use_peft:
        extra["adapter"] = "lora"
    if held and eval_set is not None:
        ctx.log(f"evaluating on {len(held):,} held-out records")
        output = trainer.predict(eval_set)
        logits = np.asarray(output.predictions)
        scores = classification_metrics(np.asarray(output.label_ids), logits.argmax(-1), len(names))
        metrics.update({"eval_accuracy": scores["accuracy"], "eval_macro_f1": scores["macro_f1"],
                        "eval_loss": float((output.metrics or {})["test_loss"])})
        ctx.log_metrics({k: v for k, v in metrics.items() if k.startswith("eval_")}, step=trainer.state.global_step)
        extra["confusion_matrix"] = scores["confusion_matrix"]
        ctx.attach(plot_confusion(ctx.run_dir / "confusion_matrix.png", scores["confusion_matrix"], names))
        ctx.log(f"held-out accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}")
    if ctx.is_main:
        out = ctx.artifact_dir
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)  # the trained model, or LoRA adapter + head
        tokenizer.save_pretrained(out)
        (out / "heldout.jsonl").write_text("".join(
            json.dumps({"text": r["text"], "label": names[r["label"]]}) + "\n" for r in held), encoding="utf-8")
    return ArtifactResult(kind=kind, metrics=metrics, extra=extra)


def is_decoder(model_config: Any) -> bool:
    """A causal-LM backbone (Llama, Qwen, GPT-2...): a model type transformers has a causal LM for and no masked LM
    (BERT-likes have both), or a checkpoint saved as ``*ForCausalLM``."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(model_config, "model_type", None)
    if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return True
    return any(str(a).endswith("ForCausalLM") for a in getattr(model_config, "architectures", None) or [])
