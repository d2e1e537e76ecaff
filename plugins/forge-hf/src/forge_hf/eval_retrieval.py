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

from forge_hf.eval_classification import _int, training_config
from forge_hf.retrieval import DEFAULT_KS, corpus_of, metrics_from_ranks, read_pairs

OPTIONS = {"anchor_column", "positive_column", "negative_column", "batch_size", "limit", "k"}


def default_data(artifact: Artifact) -> Path:
    """The held-out split the embed recipe kept, beside the artifact or the one it was exported from."""
    candidates = [artifact.path / "heldout.jsonl"]
    parent = (artifact.manifest.get("parent") or {}).get("path")
    if parent:
        candidates.append(Path(parent) / "heldout.jsonl")
    for candidate in candidates:
        if candidate.is_file() and candidate.stat().st_size:
            return candidate
    raise ForgeError(f"{artifact.path}: no held-out split kept with this artifact (trained with eval_split=0?); "
                     "give a pairs file: --data FILE")


def parse_ks(value: Any) -> list[int]:
    parts = value if isinstance(value, list) else str(value).replace(";", ",").split(",")
    try:
        ks = sorted({int(str(p).strip()) for p in parts if str(p).strip()})
    except ValueError:
        raise ConfigError(f"--set k={value}: expected integers, e.g. k=1,5,10") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--set k={value}: each k must be at least 1")
    return ks


def embed_all(predictor: Any, texts: list[str], batch_size: int, request: EvalRequest, desc: str) -> np.ndarray:
    chunks = []
    bar = request.progress(total=len(texts), desc=desc)
    for start in range(0, len(texts), batch_size):
        if request.should_stop():
            raise KeyboardInterrupt
        part = texts[start:start + batch_size]
        if hasattr(predictor, "embed"):
            chunks.append(np.asarray(predictor.embed(part), dtype=np.float32))
        else:
            chunks.append(np.array([o["embedding"] for o in predictor.predict([{"text": t} for t in part])],
                                   dtype=np.float32))
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    return np.concatenate(chunks)


def evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult:
    import forge
    from forge.evaluation import mean_interval

    options = dict(request.options)
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: the retrieval suite takes {', '.join(sorted(OPTIONS))}")
    config = training_config(artifact) if request.data is not None else {}
    data = Path(request.data) if request.data is not None else default_data(artifact)
    columns = {name: str(options.get(f"{name}_column", config.get(f"{name}_column", name)))
               for name in ("anchor", "positive", "negative")}
    batch_size = _int(options, "batch_size", 32) or 32
    limit = _int(options, "limit", None)
    ks = parse_ks(options["k"]) if "k" in options else list(DEFAULT_KS)
    if not data.is_file():
        raise ForgeError(f"{data}: no such file")
    pairs = read_pairs(str(data), columns["anchor"], columns["positive"], columns["negative"], limit=limit)
    documents, gold = corpus_of(pairs.records)
    anchors = [r["anchor"] for r in pairs.records]
    request.log(f"retrieval: {len(anchors)} queries against {len(documents)} documents from {data}; {artifact.kind}")

    with forge.load_predictor(artifact, {"batch_size": batch_size}) as predictor:
        queries = embed_all(predictor, anchors, batch_size, request, "embedding queries")
        corpus = embed_all(predictor, documents, batch_size, request, "embedding documents")
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
