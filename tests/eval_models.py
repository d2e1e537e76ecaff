"""Tiny artifacts for the predictor and evaluation-suite tests, built directly (no ``forge run``): a BERT
classifier trained for a few dozen steps, a causal LM artifact around the tiny Llama. Seconds, no download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REVIEWS = [("good movie", "positive"), ("great film", "positive"), ("i love it", "positive"),
           ("very happy", "positive"), ("bad movie", "negative"), ("awful film", "negative"),
           ("i hate it", "negative"), ("very sad", "negative")]
LABELS = ["negative", "positive"]


def write_manifest(path: Path, kind: str, **extra) -> Path:
    manifest = {"schema": 1, "type": "artifact", "kind": kind, "recipe": "test", "metrics": {}, **extra}
    (path / "forge.json").write_text(json.dumps(manifest))
    return path


def make_classifier_artifact(path: Path, base: Path, steps: int = 40) -> Path:
    """A ``sequence-classifier`` artifact (tiny BERT fitted on REVIEWS) with ``heldout.jsonl``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    batch = tokenizer([t for t, _ in REVIEWS], padding=True, return_tensors="pt")
    labels = torch.tensor([LABELS.index(y) for _, y in REVIEWS])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    (path / "heldout.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in REVIEWS))
    return write_manifest(path, "sequence-classifier", labels=LABELS, max_length=64,
                          config={"text_column": "text", "label_column": "label"})


def make_lm_artifact(path: Path, base: Path, heldout: list[dict] | None = None) -> Path:
    """A ``causal-lm`` artifact: the tiny Llama's files and a manifest (and ``heldout.jsonl`` when given)."""
    shutil.copytree(base, path, dirs_exist_ok=True)
    if heldout:
        (path / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout))
    return write_manifest(path, "causal-lm", base_model=str(base), chat_template=True)
