"""Scale-out on this machine: 1 vs 2 training processes for the same global batch, and `forge predict` on a local
Ray actor pool vs the single-process path.

    python bench/distributed.py [--steps 8] [--rows 20000] [--repeats 3]

1. Training: `forge run --recipe sft` of the tiny Llama (tests/tiny_models.py) on 16 chat records, global batch 8:
   side A one process with per_device_train_batch_size=8, side B `--nproc-per-node 2` (torchrun, gloo) with 4 per
   process. Time per step from the trainer's own `train_runtime` (model load and process start-up excluded), and
   the whole command's wall time. Sides alternate, --repeats times each.
2. Prediction: `forge predict` of --rows rows (short sentences) with the tiny BERT classifier artifact: side A the
   local engine, side B `--engine ray --workers 2` (a local Ray started by the command, Ray start-up included in
   the wall time; rows/s from the --json summary excludes model load but includes Ray's start of the actor pool per
   chunk). Sides alternate, --repeats times each. Outputs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
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


def forge(*args: str, cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "forge", *map(str, args)], cwd=cwd, capture_output=True, text=True)
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
    sides = {"1 process": ["--set", "per_device_train_batch_size=8"],
             "2 processes": ["--set", "per_device_train_batch_size=4", "--nproc-per-node", "2"]}
    out: dict[str, list[float]] = {f"{s} {k}": [] for s in sides for k in ("step_s", "wall_s")}
    for i in range(repeats):
        for side, extra in sides.items():
            run = work / f"run-{side[0]}-{i}"
            wall, _ = forge(*common, *extra, "-o", run, cwd=work)
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
    with tempfile.TemporaryDirectory(prefix="forge-bench-dist-") as tmp:
        work = Path(tmp)
        results: dict[str, list[float]] = {}
        if args.only in (None, "train"):
            results.update(train(work, args.steps, args.repeats))
        if args.only in (None, "predict"):
            results.update(predict(work, args.rows, args.repeats))
    print("\nmedian over repeats:")
    for name, values in results.items():
        print(f"  {name}: {statistics.median(values):.3f}  ({', '.join(f'{v:.3f}' for v in values)})")
    if "1 process step_s" in results:
        ratio = statistics.median(results["2 processes step_s"]) / statistics.median(results["1 process step_s"])
        print(f"  2 processes / 1 process time per step: {ratio:.2f}")
    if "local rows_per_s" in results:
        ratio = statistics.median(results["local rows_per_s"]) / statistics.median(results["ray rows_per_s"])
        wall = statistics.median(results["ray wall_s"]) / statistics.median(results["local wall_s"])
        print(f"  ray overhead: local rows/s / ray rows/s = {ratio:.2f}; wall ray / local = {wall:.2f}")


if __name__ == "__main__":
    main()
