"""forge's GPU defaults against the defaults before them, and each option alone: real tokens/s, MFU, memory.

    python bench/gpu_defaults.py --model /tmp/models/llama1b --data instruct_sample.jsonl [--steps 40] [--repeats 3]

Every variant is the same `forge run --recipe sft` (LoRA, bf16 on CUDA) with some `--set` overrides, each a fresh
process; the variants alternate within each repeat. Reported per variant: median real (non-padding) tokens/s from
the run's throughput telemetry, padding share, MFU, peak GPU memory, and the ratio to `before` (what forge did before
the GPU defaults: no packing). Needs a CUDA GPU for the numbers to mean anything (it runs on CPU too, slowly).
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
from typing import Any

HERE = Path(__file__).resolve().parent
# name -> forge run arguments ("trl-direct": bench/trl_direct.py, the same training written against TRL)
VARIANTS = {
    "before": ["--provider", "hf", "--set", "packing=false"],
    "trl-direct": [],
    "defaults": ["--provider", "hf"],  # packing: auto (on with CUDA)
    "defaults+liger": ["--provider", "hf", "--set", "use_liger_kernel=true"],
    "defaults+compile": ["--provider", "hf", "--set", "torch_compile=true"],
    "defaults+batch16": ["--provider", "hf", "--set", "per_device_train_batch_size=16"],
    "unsloth-before": ["--provider", "unsloth", "--set", "packing=false"],
    "unsloth": ["--provider", "unsloth"],
}


def run_trl(model: str, data: str, steps: int, work: Path) -> dict[str, Any]:
    out = work / f"trl-{time.time_ns()}"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(HERE / "trl_direct.py"), model, data, str(steps), str(out)],
                            capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    row = json.loads(result.stdout.strip().splitlines()[-1])
    return {"tokens_per_s": 0.0, "steady_tokens_per_s": 0.0, "padding": 0.0, "mfu": 0.0, "gib": 0.0,
            "train_runtime": row["train_runtime"], "wall": time.perf_counter() - start, "loss": row["train_loss"]}


def run(model: str, data: str, steps: int, arguments: list[str], work: Path) -> dict[str, Any]:
    out = work / f"run-{time.time_ns()}"
    command = [sys.executable, "-m", "forge", "run", "--recipe", "sft", "--model", model, "--data", data,
               "--set", f"max_steps={steps}", "--set", "eval_split=0", "--set", "logging_steps=10",
               "--set", "save_steps=100000", "-o", str(out), "--no-tracking", *arguments]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    manifest = json.loads((out / "forge.json").read_text())
    throughput = manifest.get("throughput", {})
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in logged if "tokens_per_s" in r][-1:]  # the last logging interval: no warm-up (compile)
    return {"tokens_per_s": throughput.get("tokens_per_s") or 0.0,
            "steady_tokens_per_s": steady[0]["tokens_per_s"] if steady else 0.0,
            "steady_mfu": steady[0].get("mfu", 0.0) if steady else 0.0,
            "padding": throughput.get("padding_share") or 0.0, "mfu": throughput.get("mfu") or 0.0,
            "gib": throughput.get("gpu_peak_allocated_gib") or 0.0,
            "train_runtime": manifest["metrics"].get("train_runtime", 0.0), "wall": wall,
            "loss": manifest["metrics"].get("train_loss", float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    chosen = [v for v in args.variants.split(",") if v]
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for variant in chosen:
                row = (run_trl(args.model, args.data, args.steps, Path(tmp)) if variant == "trl-direct"
                       else run(args.model, args.data, args.steps, VARIANTS[variant], Path(tmp)))
                rows[variant].append(row)
                print(f"repeat {repeat + 1} {variant}: {row}", flush=True)
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "unknown"
    print(f"\n{device}; sft LoRA, {args.model}, {args.steps} steps, median of {args.repeats}")
    print("tokens/s: whole run (warm-up included); steady: the last logging interval; ratios against `before`")
    print(f"{'variant':<18}{'tokens/s':>10}{'steady':>9}{'ratio':>7}{'padding':>9}{'MFU':>7}{'st.MFU':>8}{'GiB':>7}"
          f"{'train s':>9}{'ratio':>7}{'wall s':>8}{'ratio':>7}")
    base: dict[str, float] = {}
    for variant, runs in rows.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            print(f"{variant:<18} failed: {runs[0].get('error')}")
            continue
        keys = set.intersection(*(set(r) for r in ok))
        median = {k: statistics.median(r[k] for r in ok) for k in keys}
        if variant == "before":
            base = median

        def ratio(key: str, row: dict[str, float] = median, before: dict[str, float] = base) -> float:
            return row[key] / before[key] if before.get(key) else float("nan")

        print(f"{variant:<18}{median['tokens_per_s']:>10.0f}{median.get('steady_tokens_per_s', 0):>9.0f}"
              f"{ratio('steady_tokens_per_s'):>7.2f}{median['padding']:>9.1%}{median['mfu']:>7.1%}"
              f"{median.get('steady_mfu', 0):>8.1%}{median['gib']:>7.2f}{median['train_runtime']:>9.1f}"
              f"{ratio('train_runtime'):>7.2f}{median['wall']:>8.1f}{ratio('wall'):>7.2f}")


if __name__ == "__main__":
    main()
