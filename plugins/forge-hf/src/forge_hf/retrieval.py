"""Pairs and triplets for sentence embeddings, and retrieval metrics over them (numpy only; no torch here).

A *pair* is ``{anchor, positive}``, a *triplet* adds ``negative``. Retrieval on held-out pairs: every anchor is a
query; the corpus is every distinct positive (and negative) text of the split; the anchor's own positive is the one
relevant document. ``rank`` is 1 + the number of corpus texts scored strictly above it (cosine similarity), so ties
count in the model's favour only as far as they are real ties.

    recall@k = share of queries whose positive ranks ≤ k;   MRR = mean of 1 / rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from forge.errors import DataError

DEFAULT_KS = (1, 5, 10)


@dataclass
class Pairs:
    """Records ``{"anchor", "positive"[, "negative"]}`` (normalised names) and where each came from (file:line)."""

    records: list[dict[str, str]]
    where: list[str]
    source: str
    triplets: bool


def read_pairs(source: str, anchor: str = "anchor", positive: str = "positive", negative: str = "negative",
               max_chars: int = 20_000, limit: int | None = None) -> Pairs:
    """Read pairs (or triplets, when any record has ``negative``) from a data file; every problem names file:line
    and field. Column names are mapped to ``anchor``/``positive``/``negative`` in the records returned."""
    from forge_hf import training_data

    rows = training_data.read_rows(source)
    if not rows.records:
        raise DataError(f"{source}: no records")
    triplets = any(isinstance(r, dict) and negative in r for r in rows.records)

    def check(record: dict[str, Any]) -> str | None:
        if not isinstance(record, dict):
            return "a record must be an object with fields"
        wanted = [anchor, positive, *([negative] if triplets else [])]
        for name in wanted:
            if name not in record or record[name] is None:
                extra = " (other records have one: a triplet file needs it on every record)" if name == negative \
                    else f" (fields: {', '.join(map(str, record))})"
                return f"missing field '{name}'{extra}"
            value = record[name]
            if not isinstance(value, str):
                return f"field '{name}' must be text, got {type(value).__name__}"
            if not value.strip():
                return f"field '{name}' is empty"
            if len(value) > max_chars:
                return f"field '{name}' is {len(value)} characters (max_chars: {max_chars})"
        return None

    training_data.validate(rows, check)
    records = rows.records[:limit] if limit else rows.records
    out = []
    for record in records:
        row = {"anchor": record[anchor], "positive": record[positive]}
        if triplets:
            row["negative"] = record[negative]
        out.append(row)
    return Pairs(out, rows.where[:len(out)], source, triplets)


def corpus_of(records: list[dict[str, str]]) -> tuple[list[str], list[int]]:
    """The distinct documents of a split (positives, then negatives) and, per record, its positive's index."""
    index: dict[str, int] = {}
    for record in records:
        index.setdefault(record["positive"], len(index))
    for record in records:
        if "negative" in record:
            index.setdefault(record["negative"], len(index))
    return list(index), [index[r["positive"]] for r in records]


def ranks(queries: np.ndarray, documents: np.ndarray, gold: list[int]) -> np.ndarray:
    """1-based rank of each query's gold document by cosine similarity (embeddings need not be normalised)."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    d = documents / np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
    scores = q @ d.T
    target = scores[np.arange(len(gold)), np.asarray(gold)]
    return (scores > target[:, None]).sum(axis=1) + 1


def metrics_from_ranks(rank: np.ndarray, ks: tuple[int, ...] | list[int] = DEFAULT_KS) -> dict[str, float]:
    """``recall_at_K`` for each k and ``mrr`` (names that MLflow and gate expressions take)."""
    if not len(rank):
        return {}
    out = {f"recall_at_{k}": float((rank <= k).mean()) for k in ks}
    out["mrr"] = float((1.0 / rank).mean())
    return out


def evaluate_embeddings(encode: Any, records: list[dict[str, str]],
                        ks: tuple[int, ...] | list[int] = DEFAULT_KS) -> tuple[dict[str, float], np.ndarray]:
    """Retrieval metrics of ``encode`` (texts → 2-D array) on held-out records, and each query's rank."""
    documents, gold = corpus_of(records)
    rank = ranks(np.asarray(encode([r["anchor"] for r in records])), np.asarray(encode(documents)), gold)
    return metrics_from_ranks(rank, ks), rank
