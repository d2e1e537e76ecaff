"""The ``classification`` suite's overhead: the evaluator (``forge eval``'s path: forge.load_predictor, batched
prediction, metrics, bootstrap intervals, two PNGs, records) vs calling the model directly (tokenizer + forward in
batches of 32 + argmax + accuracy), on the packaged all-MiniLM-L6-v2 and SST-2 dev (../shared/data/sentiment_test.csv).

    python bench/eval_overhead.py [--repeats 3] [--rows 872]

Both sides in this process after imports and one warm-up each ("after start-up"), both loading the model from the
artifact every time; alternating sides; ratio of medians.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import shared


def minilm_classifier(work: Path) -> Path:
    """A ``sequence-classifier`` artifact from the packaged MiniLM (head untrained: accuracy is not the point)."""
    import torch
    from forge_hf.provider import resolve_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source, _ = resolve_model("minilm-l6")
    torch.manual_seed(0)
    artifact = work / "minilm"
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    model.save_pretrained(artifact, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(artifact)
    (artifact / "forge.json").write_text(json.dumps({
        "schema": 1, "type": "artifact", "kind": "sequence-classifier", "labels": ["0", "1"], "max_length": 128,
        "config": {"text_column": "text", "label_column": "label"}}))
    return artifact


def direct(artifact: Path, texts: list[str], labels: list[int]) -> float:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact)
    model = AutoModelForSequenceClassification.from_pretrained(artifact, use_safetensors=True).eval()
    predicted = []
    for start in range(0, len(texts), 32):
        batch = tokenizer(texts[start:start + 32], truncation=True, max_length=128, padding=True,
                          return_tensors="pt")
        with torch.inference_mode():
            predicted.extend(model(**batch).logits.argmax(-1).tolist())
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=872)
    args = parser.parse_args()

    import forge
    import torch
    from forge.plugins import load_plugins

    rows = list(csv.DictReader(shared("sentiment_test.csv").open()))[:args.rows]
    texts, labels = [r["text"] for r in rows], [int(r["label"]) for r in rows]
    evaluator = load_plugins().get("evaluators", "classification").item
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = minilm_classifier(work)
        artifact = forge.Artifact.load(path)
        data = work / "dev.csv"
        with data.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels, strict=True))

        def through_evaluator() -> float:
            request = forge.EvalRequest(data=data, options={"batch_size": 32}, output_dir=work / "eval", seed=0,
                                        log=lambda message: None)
            return evaluator.run(artifact, request).metrics["accuracy"]

        sides = {"direct": lambda: direct(path, texts, labels), "evaluator": through_evaluator}
        accuracy = {name: fn() for name, fn in sides.items()}  # warm-up (imports, first-touch)
        assert abs(accuracy["direct"] - accuracy["evaluator"]) < 1e-9, accuracy
        times: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name in (("direct", "evaluator") if repeat % 2 == 0 else ("evaluator", "direct")):
                start = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - start)
                print(f"repeat {repeat + 1} {name}: {times[name][-1]:.2f} s", flush=True)
    base, suite = statistics.median(times["direct"]), statistics.median(times["evaluator"])
    print(f"\n{len(texts)} rows, torch {torch.__version__}, {torch.get_num_threads()} threads; same accuracy "
          f"{accuracy['direct']:.3f} both sides")
    print("| side | median s | ratio |\n|---|---|---|")
    print(f"| model called directly | {base:.2f} | 1.00× |")
    print(f"| classification suite (evaluator) | {suite:.2f} | **{suite / base:.3f}×** |")


if __name__ == "__main__":
    main()
