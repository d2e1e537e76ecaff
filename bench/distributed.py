"""Scale-out on this machine: 1 vs 2 training processes for the same global batch, and `forge predict` on a local
Ray actor pool vs the single-process path.

    python bench/distributed.py [--steps 8] [--rows 20000] [--repeats 3] [--only train|predict]

1. Training: `forge run --recipe sft` of the tiny Llama (tests/tiny_models.py) on 16 chat records, global batch 8,
   three sides: one process with per_device_train_batch_size=8 and torch's default intra-op threads
   (OMP_NUM_THREADS unset: one per core), the same with OMP_NUM_THREADS=1 (the control: what torchrun gives each
   worker), and `--nproc-per-node 2` (torchrun, gloo, OMP_NUM_THREADS=1 per worker) with 4 per process. Time per
   step from the trainer's own `train_runtime` (model load and process start-up excluded), and the whole command's
   wall time. Sides alternate, --repeats times each; `uptime` is printed before and after.
2. Prediction: `forge predict` of --rows rows (short sentences) with the tiny BERT classifier artifact: side A the
   local engine (OMP_NUM_THREADS unset), side B `--engine ray --workers 2` (a local Ray started by the command, Ray
   start-up included in the wall time; rows/s from the --json summary excludes model load but includes Ray's start
   of the actor pool per chunk). Sides alternate, --repeats times each. Outputs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CHAT = [{"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                      {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
        for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")] * 4]
TEXTS = ["good movie", "awful film", "i love it", "bad plot", "great acting", "sad film", "a very fine picture"]


def forge(*args: str, cwd: Path, threads: int | None = None) -> tuple[float, str]:
    """``forge ARGS`` in a subprocess; ``threads``: its OMP_NUM_THREADS (None: unset, torch's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "forge", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                         env=env)
    if out.returncode not in (0,):
        raise SystemExit(f"forge {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start, out.stdout


def train(work: Path, steps: int, repeats: int) -> dict[str, list[float]]:
    from tiny_models import make_tiny_causal_lm

    model = make_tiny_causal_lm(work / "tiny-lm")
    data = work / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    common = ["run", "--recipe", "sft", "--model", model, "--data", data, "--set", f"max_steps={steps}",
              "--set", "eval_split=0", "--set", "save_steps=1000", "--no-tracking"]
    one = ["--set", "per_device_train_batch_size=8"]
    sides: dict[str, tuple[list[str], int | None]] = {  # name: (options, OMP_NUM_THREADS)
        "1 process": (one, None),
        "1 process 1 thread": (one, 1),
        "2 processes": (["--set", "per_device_train_batch_size=4", "--nproc-per-node", "2"], None),
    }
    out: dict[str, list[float]] = {f"{s} {k}": [] for s in sides for k in ("step_s", "wall_s")}
    for i in range(repeats):
        for n, (side, (extra, threads)) in enumerate(sides.items()):
            run = work / f"run-{n}-{i}"
            wall, _ = forge(*common, *extra, "-o", run, cwd=work, threads=threads)
            metrics = json.loads((run / "forge.json").read_text())["metrics"]
            out[f"{side} step_s"].append(metrics["train_runtime"] / steps)
            out[f"{side} wall_s"].append(wall)
            print(f"train {side}: {metrics['train_runtime'] / steps:.3f} s/step, {wall:.1f} s wall", flush=True)
    return out


def predict(work: Path, rows: int, repeats: int) -> dict[str, list[float]]:
    from tiny_models import make_tiny_bert_classifier_base, make_tiny_classifier_artifact

    clf = make_tiny_classifier_artifact(work / "clf", make_tiny_bert_classifier_base(work / "tiny-bert"))
    (work / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": TEXTS[i % len(TEXTS)]}) + "\n"
                                           for i in range(rows)))
    sides = {"local": [], "ray": ["--engine", "ray", "--workers", "2"]}
    out: dict[str, list[float]] = {f"{s} {k}": [] for s in sides for k in ("rows_per_s", "wall_s")}
    for i in range(repeats):
        for side, extra in sides.items():
            wall, stdout = forge("predict", clf, "-i", "in.jsonl", "-o", f"{side}-{i}.jsonl", "--json", *extra,
                                 cwd=work)
            summary = json.loads(stdout.strip().splitlines()[-1])
            out[f"{side} rows_per_s"].append(summary["rows_per_s"])
            out[f"{side} wall_s"].append(wall)
            print(f"predict {side}: {summary['rows_per_s']:.0f} rows/s, {wall:.1f} s wall", flush=True)
        same = (work / f"local-{i}.jsonl").read_bytes() == (work / f"ray-{i}.jsonl").read_bytes()
        print(f"predict outputs identical: {same}", flush=True)
        assert same
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["train", "predict"])
    args = parser.parse_args()
    default_threads = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}).stdout.strip()
    print(f"cpus {os.cpu_count()}, torch's default intra-op threads {default_threads} (OMP_NUM_THREADS unset); "
          f"OMP_NUM_THREADS of this shell: {os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    print(f"uptime before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="forge-bench-dist-") as tmp:
        work = Path(tmp)
        results: dict[str, list[float]] = {}
        if args.only in (None, "train"):
            results.update(train(work, args.steps, args.repeats))
        if args.only in (None, "predict"):
            results.update(predict(work, args.rows, args.repeats))
    print(f"uptime after: {uptime()}", flush=True)
    print("\nmedian over repeats:")
    for name, values in results.items():
        print(f"  {name}: {statistics.median(values):.3f}  ({', '.join(f'{v:.3f}' for v in values)})")
    if "1 process step_s" in results:
        med = {side: statistics.median(results[f"{side} step_s"])
               for side in ("1 process", "1 process 1 thread", "2 processes")}
        print(f"  time per step, 2 processes / 1 process: {med['2 processes'] / med['1 process']:.2f}")
        print(f"  time per step, 2 processes / 1 process 1 thread: "
              f"{med['2 processes'] / med['1 process 1 thread']:.2f}")
        print(f"  time per step, 1 process 1 thread / 1 process: {med['1 process 1 thread'] / med['1 process']:.2f}")
        per_repeat = [a / b for a, b in zip(results["2 processes step_s"], results["1 process 1 thread step_s"],
                                            strict=True)]
        print(f"  per repeat, 2 processes / 1 process 1 thread: {', '.join(f'{r:.2f}' for r in per_repeat)}")
    if "local rows_per_s" in results:
        ratio = statistics.median(results["local rows_per_s"]) / statistics.median(results["ray rows_per_s"])
        wall = statistics.median(results["ray wall_s"]) / statistics.median(results["local wall_s"])
        print(f"  ray overhead: local rows/s / ray rows/s = {ratio:.2f}; wall ray / local = {wall:.2f}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
