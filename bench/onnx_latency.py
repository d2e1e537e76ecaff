"""The MiniLM sentiment classifier: torch eager vs ONNX fp32 vs ONNX int8 (batch-1 latency, batch-32 throughput,
accuracy), and server throughput at 16 concurrent clients with and without micro-batching. One run, side by side.

    python bench/onnx_latency.py [--train-rows 2000] [--requests 40]

Trains `classify` on SST-2 (../shared/data/sentiment_train.csv sample) from the packaged all-MiniLM-L6-v2, exports
fp32 and int8 ONNX, then measures on ../shared/data/sentiment_test.csv. ONNX Runtime and torch both use all cores.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import forge, shared


def timed(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def server_throughput(artifact: Path, batch: int, texts: list[str], clients: int, per_client: int, work: Path) -> float:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", str(artifact), "--port", str(port),
                             "--max-batch-size", str(batch), "--max-wait-ms", "5"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        errors: list[str] = []

        def client(k: int) -> None:
            with httpx.Client(timeout=60) as http:
                for i in range(per_client):
                    r = http.post(f"{url}/predict", json={"text": texts[(k * per_client + i) % len(texts)]})
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise SystemExit(f"server errors: {errors[:3]}")
        return clients * per_client / elapsed
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=40, help="requests per client in the server test")
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = list(csv.DictReader(shared("sentiment_train.csv").open()))[: args.train_rows]
        with (work / "train.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
        forge("run", "--recipe", "classify", "--data", "train.csv", "--set", "num_train_epochs=1",
              "--set", "label_names=[negative, positive]", "--set", "eval_split=0.1", "--no-tracking",
              "-o", "run", cwd=work)
        forge("export", "run", "--format", "onnx", cwd=work)
        forge("export", "run", "--format", "onnx", "--quantize", "int8", cwd=work)
        test = list(csv.DictReader(shared("sentiment_test.csv").open()))
        texts, labels = [r["text"] for r in test], np.array([int(r["label"]) for r in test])
        artifact = work / "run" / "artifact"
        tokenizer = AutoTokenizer.from_pretrained(artifact)
        model = AutoModelForSequenceClassification.from_pretrained(artifact).eval()
        from forge_onnx.export import session

        sessions = {name: session(work / "run" / "exports" / name / "model.onnx") for name in ("onnx", "onnx-int8")}
        names = [i.name for i in sessions["onnx"].get_inputs()]

        def torch_predict(batch: list[str]) -> np.ndarray:
            enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
            with torch.inference_mode():
                return model(**enc).logits.numpy()

        def onnx_predict(name: str, batch: list[str]) -> np.ndarray:
            enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="np")
            return sessions[name].run(None, {n: enc[n].astype(np.int64) for n in names})[0]

        engines = {"torch eager": torch_predict, "onnx fp32": lambda b: onnx_predict("onnx", b),
                   "onnx int8": lambda b: onnx_predict("onnx-int8", b)}
        print(f"MiniLM-L6 classifier trained on {len(rows)} SST-2 rows; {len(texts)} test rows; "
              f"torch threads {torch.get_num_threads()}")
        print(f"{'engine':<14}{'batch-1 ms':>11}{'vs torch':>10}{'batch-32 rows/s':>17}{'accuracy':>10}")
        base = None
        for name, predict in engines.items():
            latency = timed(lambda p=predict: p([texts[7]]), 50) * 1000
            throughput = 32 / timed(lambda p=predict: p(texts[:32]), 10)
            accuracy = float((np.concatenate([predict(texts[i:i + 64]) for i in range(0, len(texts), 64)])
                              .argmax(-1) == labels).mean())
            base = base or latency
            print(f"{name:<14}{latency:>11.2f}{base / latency:>9.2f}x{throughput:>17.0f}{accuracy:>10.3f}")
        int8 = work / "run" / "exports" / "onnx-int8"
        no_batching = server_throughput(int8, 1, texts, 16, args.requests, work)
        batching = server_throughput(int8, 16, texts, 16, args.requests, work)
        print(f"server (onnx int8), 16 concurrent clients × {args.requests} requests: "
              f"{no_batching:.0f} req/s without micro-batching, {batching:.0f} req/s with (max 16, 5 ms): "
              f"{batching / no_batching:.2f}x")


if __name__ == "__main__":
    main()
