"""Evaluator ``classification``: a text classifier (``sequence-classifier`` or its ONNX export) on a labelled file.

    forge eval runs/classify-1 --suite classification --data test.csv
    forge eval runs/classify-1/exports/onnx-int8 --suite classification --set batch_size=64 --gate "accuracy>=0.85"

Data: CSV/TSV/JSONL/JSON/Parquet with a text and a label column (``--set text_column=... label_column=...``; default:
the columns the classifier was trained with, else ``text``/``label``); labels are names or integer ids. Without
``--data``, the held-out split the ``classify`` recipe kept (``heldout.jsonl``, also found beside the artifact an
export was made from). The model runs through ``forge.load_predictor``, so torch and ONNX artifacts share this code.

Metrics: ``accuracy`` (95% bootstrap interval from the per-example values), ``macro_f1`` and ``ece`` (expected
calibration error of the top-class confidence, ``bins`` equal-width bins; bootstrap intervals over examples),
``log_loss``, and ``precision_LABEL`` / ``recall_LABEL`` / ``f1_LABEL`` per class. Plots: ``confusion_matrix.png``,
``reliability.png``. Records: ``{input, expected, output, score, confidence, correct, scores}`` where ``score`` is
the probability the model gave the expected label.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from forge import Artifact, DataError, EvalRequest, EvalResult, ForgeError

from forge_hf.eval_inputs import check_options, heldout_split, in_batches, limit_option, training_config

OPTIONS = {"text_column", "label_column", "batch_size", "bins", "limit"}


def metric_name(label: str) -> str:
    """A label as part of a metric name (MLflow and gate expressions take letters, digits, ``_ - .``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "label"


def read_examples(path: Path, text_column: str, label_column: str, labels: list[str],
                  limit: int | None) -> tuple[list[str], list[int], list[str]]:
    """Texts, label ids (into ``labels``) and locations; every problem names file and line."""
    from forge_hf import training_data

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = training_data.read_rows(str(path))
    if not rows.records:
        raise DataError(f"{path}: no records")

    def check(record: dict[str, Any]) -> str | None:
        text, label = record.get(text_column), record.get(label_column)
        if not isinstance(text, str) or not text.strip():
            return f"field '{text_column}' must be non-empty text" if text_column in record else \
                f"missing field '{text_column}' (--set text_column=NAME; fields: {', '.join(map(str, record))})"
        if label is None or label == "":
            return f"missing field '{label_column}' (--set label_column=NAME; fields: {', '.join(map(str, record))})"
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            return f"field '{label_column}' must be a label name or an integer id"
        name = str(label)
        if name in labels:
            return None
        if name.strip().lstrip("-").isdigit() and 0 <= int(name) < len(labels):
            return None
        return f"label {name!r} is not one of the model's labels ({', '.join(labels)})"

    training_data.validate(rows, check)
    records = rows.records[:limit] if limit else rows.records
    ids = []
    for record in records:
        name = str(record[label_column])
        ids.append(labels.index(name) if name in labels else int(name))
    return [r[text_column] for r in records], ids, rows.where[:len(records)]


def per_class(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class from a confusion matrix (rows true, columns predicted); 0 when undefined."""
    tp = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return precision, recall, f1


def macro_f1(truth: np.ndarray, predicted: np.ndarray, n: int) -> float:
    """Mean F1 over the classes present in ``truth`` or ``predicted`` (scikit-learn's macro average)."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    return float(per_class(matrix)[2][present].mean()) if present.any() else 0.0


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """Σ_b |B|/n · |accuracy(B) − mean confidence(B)| over equal-width confidence bins."""
    if not len(confidence):
        return float("nan")
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    # |B| · |accuracy(B) − confidence(B)| = |Σ_B correct − Σ_B confidence|
    gap = np.bincount(which, weights=correct, minlength=bins) - np.bincount(which, weights=confidence, minlength=bins)
    return float(np.abs(gap).sum() / len(confidence))


def evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult:
    import forge
    from forge.evaluation import bootstrap_interval

    from forge_hf.predict import int_option

    options = dict(request.options)
    check_options(options, OPTIONS, "classification")
    config = training_config(artifact)
    if request.data is not None:
        data = Path(request.data)
        text_column = str(options.get("text_column", config.get("text_column", "text")))
        label_column = str(options.get("label_column", config.get("label_column", "label")))
    else:
        data = heldout_split(artifact, "a labelled file")  # written by the recipe with these names
        text_column = str(options.get("text_column", "text"))
        label_column = str(options.get("label_column", "label"))
    bins = int_option(options, "bins", 10)
    batch_size = int_option(options, "batch_size", 32)
    limit = limit_option(options)
    labels = [str(x) for x in artifact.manifest.get("labels") or []]
    if not labels:
        raise ForgeError(f"{artifact.path}: the manifest names no labels; is this a classifier forge made?")
    texts, truth_list, _ = read_examples(data, text_column, label_column, labels, limit)
    request.log(f"classification: {len(texts)} examples from {data}, {len(labels)} labels; {artifact.kind}")

    with forge.load_predictor(artifact, {"batch_size": batch_size}) as predictor:
        probs = in_batches(texts, batch_size, request, "classifying",
                           lambda part: probabilities(predictor, part, labels))
    truth = np.asarray(truth_list, dtype=np.int64)
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    correct = (predicted == truth).astype(np.float64)
    expected_prob = probs[np.arange(len(truth)), truth]
    loss = -np.log(np.clip(expected_prob, 1e-12, 1.0))
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    precision, recall, f1 = per_class(matrix)

    metrics: dict[str, float] = {
        "accuracy": float(correct.mean()),
        "macro_f1": macro_f1(truth, predicted, n),
        "ece": expected_calibration_error(confidence, correct, bins),
        "log_loss": float(loss.mean()),
    }
    for k, label in enumerate(labels):
        name = metric_name(label)
        metrics[f"precision_{name}"] = float(precision[k])
        metrics[f"recall_{name}"] = float(recall[k])
        metrics[f"f1_{name}"] = float(f1[k])
    intervals = {
        "macro_f1": bootstrap_interval(len(truth), lambda idx: macro_f1(truth[idx], predicted[idx], n),
                                       seed=request.seed),
        "ece": bootstrap_interval(len(truth), lambda idx: expected_calibration_error(confidence[idx], correct[idx],
                                                                                     bins), seed=request.seed),
    }
    records = [{"input": text, "expected": labels[t], "output": labels[p], "score": float(e),
                "confidence": float(c), "correct": bool(t == p),
                "scores": {name: float(v) for name, v in zip(labels, row, strict=True)}}
               for text, t, p, e, c, row in zip(texts, truth, predicted, expected_prob, confidence, probs,
                                                strict=True)]
    request.output_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_confusion(request.output_dir / "confusion_matrix.png", matrix, labels, data.name),
             plot_reliability(request.output_dir / "reliability.png", confidence, correct, bins, metrics["ece"])]
    low, high = intervals["macro_f1"]
    request.log(f"classification: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
                f"(95% interval {low:.3f}-{high:.3f}), ECE {metrics['ece']:.3f}")
    return EvalResult(metrics=metrics, records=records, per_example={"accuracy": correct.tolist(),
                                                                     "log_loss": loss.tolist()},
                      intervals=intervals, plots=plots,
                      extra={"labels": labels, "confusion_matrix": matrix.tolist(), "examples": len(texts),
                             "data": str(data), "text_column": text_column, "label_column": label_column,
                             "bins": bins})


def probabilities(predictor: Any, texts: list[str], labels: list[str]) -> np.ndarray:
    """Class probabilities in ``labels`` order from any classifier predictor (fast path when it offers them)."""
    if hasattr(predictor, "probabilities") and list(getattr(predictor, "labels", [])) == labels:
        return np.asarray(predictor.probabilities(texts), dtype=np.float64)
    outputs = predictor.predict([{"text": t} for t in texts])
    return np.array([[float(o["scores"][name]) for name in labels] for o in outputs], dtype=np.float64)


def plot_confusion(path: Path, matrix: np.ndarray, names: list[str], source: str) -> Path:
    from forge_hf.recipes.classify import plot_confusion as draw

    return draw(path, matrix.tolist(), names, title=f"confusion matrix: {source}")


def plot_reliability(path: Path, confidence: np.ndarray, correct: np.ndarray, bins: int, ece: float) -> Path:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), bar width = bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    centres, accuracy, counts = [], [], []
    for b in range(bins):
        members = which == b
        if members.any():
            centres.append(confidence[members].mean())
            accuracy.append(correct[members].mean())
            counts.append(int(members.sum()))
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    ax.bar(centres, accuracy, width=1 / bins * 0.9, color="tab:blue", alpha=0.7)
    for x, y, c in zip(centres, accuracy, counts, strict=True):
        ax.text(x, y + 0.02, str(c), ha="center", fontsize="x-small")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: ECE {ece:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
