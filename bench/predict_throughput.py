"""`forge predict` throughput against calling the model one row at a time, and its peak memory on large files.

    python bench/predict_throughput.py [--rows 3000] [--repeats 3] [--rss-rows 10000,100000,1000000]

1. Throughput, for two int8 ONNX classifiers (`forge export --format onnx --quantize int8`): the packaged
   all-MiniLM-L6-v2 as a 2-label classifier (compute-bound on a CPU) and the tiny BERT of tests/tiny_models.py
   (per-call overhead-bound), heads untrained (speed does not depend on them). Side A: `forge predict` on a CSV of
   SST-2 sentences (../shared/data/sentiment_test.csv, repeated to --rows), rows/s from its --json summary
   (prediction, reading and writing; not the model load). Side B: the same predictor (`forge.load_predictor`) called
   in a loop, one row per call, in this process, over the same rows. Sides alternate, --repeats times each.
2. Where the time goes (--compute-rows, MiniLM int8): CPU milliseconds per row with one intra-op thread (CPU time
   does not depend on what else runs on the machine) for one row per call against length-sorted batches of 16 and
   32, and ONNX Runtime's own profile: time in kernels against time per `run` call, by operator.
3. Memory: peak RSS of the whole `forge predict` process on generated CSVs of growing size (the tiny-BERT-sized
   classifier from tests/tiny_models.py, int8 ONNX, so a million rows take minutes, not hours): bounded means flat.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import forge, shared

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def classifier_from(base: str, path: Path) -> Path:
    """A ``sequence-classifier`` artifact from an encoder, head newly initialised."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    labels = ["negative", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    (path / "forge.json").write_text(json.dumps({"schema": 1, "kind": "sequence-classifier", "labels": labels,
                                                 "max_length": 128}))
    return path


def write_texts(path: Path, rows: int, texts: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)]])
    return path


def forge_predict_rate(artifact: Path, data: Path, work: Path, batch_size: int) -> float:
    out = subprocess.run([sys.executable, "-m", "forge", "predict", str(artifact), "-i", str(data), "-o", "out.jsonl",
                          "--overwrite", "--json", "--batch-size", str(batch_size)],
                         cwd=work, check=True, capture_output=True, text=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rows_per_s"])


def loop_rate(predictor, texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        predictor.predict([{"text": text}])
    return len(texts) / (time.perf_counter() - start)


def compare(artifact: Path, label: str, data: Path, rows: list[str], work: Path, args: argparse.Namespace) -> None:
    import forge as forge_api

    predictor = forge_api.load_predictor(forge_api.Artifact.load(artifact), {"batch_size": 1})
    loop_rate(predictor, rows[:50])  # warm up
    batched, looped = [], []
    for repeat in range(args.repeats):
        batched.append(forge_predict_rate(artifact, data, work, args.batch_size))
        looped.append(loop_rate(predictor, rows))
        print(f"{label} repeat {repeat + 1}: forge predict {batched[-1]:.0f} rows/s, loop {looped[-1]:.0f} rows/s",
              flush=True)
    predictor.close()
    ratio = statistics.median(batched) / statistics.median(looped)
    print(f"{label}, {len(rows)} SST-2 rows, median of {args.repeats}: forge predict (batch {args.batch_size}) "
          f"{statistics.median(batched):.0f} rows/s, per-row loop {statistics.median(looped):.0f} rows/s, "
          f"ratio {ratio:.2f}x (goal >= 3x: {'met' if ratio >= 3 else 'NOT met'})\n", flush=True)


def compute_split(artifact: Path, rows: list[str], repeats: int) -> None:
    """CPU ms per row (one intra-op thread) for batch 1 vs sorted batches, and ORT's kernel time by operator."""
    import collections

    import forge as forge_api
    import onnxruntime as ort
    from forge_onnx.serve import onnx_classifier

    loaded = forge_api.Artifact.load(artifact)
    ordered = sorted(rows, key=len)

    def cpu_ms(probs, batch: int) -> float:
        data = rows if batch == 1 else ordered
        start = time.process_time()
        for i in range(0, len(data), batch):
            probs(data[i:i + batch])
        return (time.process_time() - start) / len(data) * 1000

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    probs = onnx_classifier(loaded, ort.InferenceSession(str(artifact / "model.onnx"), options,
                                                         providers=["CPUExecutionProvider"]))[1]
    probs(rows[:8])
    per_row: dict[int, list[float]] = {1: [], 16: [], 32: []}
    for _ in range(repeats):
        for batch in per_row:
            per_row[batch].append(cpu_ms(probs, batch))
    one = statistics.median(per_row[1])
    print(f"CPU per row, one intra-op thread, {len(rows)} rows, median of {repeats}: " + ", ".join(
        f"batch {b}: {statistics.median(v):.2f} ms ({one / statistics.median(v):.2f}x less than batch 1)"
        for b, v in per_row.items()))
    for batch in (1, 32):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(artifact.parent / f"ort-profile-{batch}")
        run_session = ort.InferenceSession(str(artifact / "model.onnx"), options, providers=["CPUExecutionProvider"])
        probs = onnx_classifier(loaded, run_session)[1]
        cpu_ms(probs, batch)
        events = json.loads(Path(run_session.end_profiling()).read_text())
        kernels: collections.Counter[str] = collections.Counter()
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                kernels[event["args"]["op_name"]] += event["dur"]
        total = sum(kernels.values())
        runs = sum(e["dur"] for e in events if e.get("name") == "model_run")
        print(f"  ORT profile, batch {batch}: {runs / 1000 / len(rows):.2f} ms of run() per row, of which kernels "
              f"{total / runs:.0%}: " + ", ".join(f"{k} {v / total:.0%}" for k, v in kernels.most_common(5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rss-rows", default="10000,100000,1000000", help="'' to skip")
    parser.add_argument("--compute-rows", type=int, default=256, help="0 to skip")
    args = parser.parse_args()

    from forge_hf.provider import resolve_model

    with open(shared("sentiment_test.csv"), newline="") as handle:
        texts = [r["text"] for r in csv.DictReader(handle)]
    work = Path(tempfile.mkdtemp(prefix="forge-bench-predict-"))
    minilm, _ = resolve_model("minilm-l6")
    classifier_from(minilm, work / "minilm-clf")
    forge("export", "minilm-clf", "--format", "onnx", "--quantize", "int8", "-o", "minilm-int8", cwd=work)
    data = write_texts(work / "texts.csv", args.rows, texts)
    rows = [texts[i % len(texts)] for i in range(args.rows)]

    from tiny_models import make_tiny_bert_classifier_base, make_tiny_classifier_artifact

    base = make_tiny_bert_classifier_base(work / "tiny-bert")
    make_tiny_classifier_artifact(work / "tiny-clf", base)
    forge("export", "tiny-clf", "--format", "onnx", "--quantize", "int8", "-o", "tiny-int8", cwd=work)
    if args.rows:
        for name, label in (("minilm-int8", "MiniLM-L6 int8 ONNX"), ("tiny-int8", "tiny BERT (2x32) int8 ONNX")):
            compare(work / name, label, data, rows, work, args)

    if args.compute_rows:
        compute_split(work / "minilm-int8", texts[:args.compute_rows], args.repeats)

    print("\npeak RSS of forge predict (tiny int8 classifier, CSV in, JSONL out, chunks of 10,000 rows):")
    for n in (int(x) for x in args.rss_rows.split(",") if x):
        big = write_texts(work / f"big-{n}.csv", n, texts)
        measured = forge("predict", "tiny-int8", "-i", big.name, "-o", f"big-{n}.jsonl", "--batch-size", "64",
                         cwd=work, peak_rss=True)
        size = big.stat().st_size / 2**20
        print(f"  {n:>9,} rows ({size:7.1f} MiB in): peak RSS {measured['peak_rss_gib'] * 1024:6.0f} MiB, "
              f"{measured['wall']:6.1f} s wall, {n / measured['wall']:6.0f} rows/s", flush=True)
        big.unlink()
        (work / f"big-{n}.jsonl").unlink()
    print(f"(work files in {work})")


if __name__ == "__main__":
    main()
