"""Evaluator ``retrieval``: a sentence embedder (``sentence-embedder`` or its ONNX export) retrieving the positive
of each anchor among all positives (and negatives) of a pairs/triplets file.

    forge eval runs/embed-1 --suite retrieval                      # the held-out split the embed recipe kept
    forge eval runs/embed-1/exports/onnx --suite retrieval --data pairs.jsonl --gate "recall_at_10>=0.8"
    forge eval runs/embed-1 --suite retrieval --data qa.csv --set anchor_column=question --set positive_column=answer

Data: records ``{anchor, positive[, negative]}`` (column names by ``--set anchor_column=`` ...; default: the columns
the model was trained with, else ``anchor``/``positive``/``negative``). Without ``--data``, the recipe's
``heldout.jsonl`` (also found beside the artifact an export was made from). The model runs through
``forge.load_predictor``, so torch and ONNX embedders share this code.

Metrics: ``recall_at_K`` for each ``k`` (``--set k=1,5,10``; default 1, 5, 10) and ``mrr``, each with a 95% bootstrap
interval over queries. Records: ``{input, expected, output, rank, correct}`` (``output``: the top document).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from forge import Artifact, ConfigError, EvalRequest, EvalResult, ForgeError

from forge_hf.eval_inputs import check_options, heldout_split, in_batches, limit_option, training_config
from forge_hf.retrieval import DEFAULT_KS, corpus_of, metrics_from_ranks, read_pairs

OPTIONS = {"anchor_column", "positive_column", "negative_column", "batch_size", "limit", "k"}


def parse_ks(value: Any) -> list[int]:
    parts = value if isinstance(value, list) else str(value).replace(";", ",").split(",")
    try:
        ks = sorted({int(str(p).strip()) for p in parts if str(p).strip()})
    except ValueError:
        raise ConfigError(f"--set k={value}: expected integers, e.g. k=1,5,10") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--set k={value}: each k must be at least 1")
    return ks


def embed(predictor: Any, texts: list[str]) -> np.ndarray:
    if hasattr(predictor, "embed"):
        return np.asarray(predictor.embed(texts), dtype=np.float32)
    return np.array([o["embedding"] for o in predictor.predict([{"text": t} for t in texts])], dtype=np.float32)


def evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult:
    import forge
    from forge.evaluation import mean_interval

    from forge_hf.predict import int_option

    options = dict(request.options)
    check_options(options, OPTIONS, "retrieval")
    config = training_config(artifact) if request.data is not None else {}
    data = Path(request.data) if request.data is not None else heldout_split(artifact, "a pairs file")
    columns = {name: str(options.get(f"{name}_column", config.get(f"{name}_column", name)))
               for name in ("anchor", "positive", "negative")}
    batch_size = int_option(options, "batch_size", 32)
    limit = limit_option(options)
    ks = parse_ks(options["k"]) if "k" in options else list(DEFAULT_KS)
    if not data.is_file():
        raise ForgeError(f"{data}: no such file")
    pairs = read_pairs(str(data), columns["anchor"], columns["positive"], columns["negative"], limit=limit)
    documents, gold = corpus_of(pairs.records)
    anchors = [r["anchor"] for r in pairs.records]
    request.log(f"retrieval: {len(anchors)} queries against {len(documents)} documents from {data}; {artifact.kind}")

    with forge.load_predictor(artifact, {"batch_size": batch_size}) as predictor:
        queries = in_batches(anchors, batch_size, request, "embedding queries", lambda part: embed(predictor, part))
        corpus = in_batches(documents, batch_size, request, "embedding documents", lambda part: embed(predictor, part))
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    d = corpus / np.maximum(np.linalg.norm(corpus, axis=1, keepdims=True), 1e-12)
    scores = q @ d.T
    target = scores[np.arange(len(gold)), np.asarray(gold)]
    rank = (scores > target[:, None]).sum(axis=1) + 1
    top = scores.argmax(axis=1)
    metrics = metrics_from_ranks(rank, ks)
    per_example: dict[str, Sequence[float]] = {f"recall_at_{k}": (rank <= k).astype(float).tolist() for k in ks}
    per_example["mrr"] = (1.0 / rank).tolist()
    intervals = {name: mean_interval(values, seed=request.seed) for name, values in per_example.items()}
    records = [{"input": a, "expected": documents[g], "output": documents[t], "rank": int(r), "correct": bool(r == 1),
                "score": float(s)}
               for a, g, t, r, s in zip(anchors, gold, top, rank, target, strict=True)]
    shown = ", ".join(f"recall@{k} {metrics[f'recall_at_{k}']:.3f}" for k in ks)
    request.log(f"retrieval: {shown}, MRR {metrics['mrr']:.3f}")
    return EvalResult(metrics=metrics, records=records, per_example=per_example, intervals=intervals,
                      extra={"queries": len(anchors), "documents": len(documents), "data": str(data), "k": ks,
                             "columns": columns, "triplets": pairs.triplets})
