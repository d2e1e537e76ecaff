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

VARIANTS = {
    "before": ["packing=false"],
    "defaults": [],  # packing: auto (on with CUDA)
    "defaults+liger": ["use_liger_kernel=true"],
    "defaults+compile": ["torch_compile=true"],
    "defaults+batch16": ["per_device_train_batch_size=16"],
}


def run(model: str, data: str, steps: int, overrides: list[str], work: Path) -> dict[str, Any]:
    out = work / f"run-{time.time_ns()}"
    command = [sys.executable, "-m", "forge", "run", "--recipe", "sft", "--model", model, "--data", data,
               "--set", f"max_steps={steps}", "--set", "eval_split=0", "--set", "logging_steps=10",
               "--set", "save_steps=100000", "-o", str(out), "--no-tracking"]
    for item in overrides:
        command += ["--set", item]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    manifest = json.loads((out / "forge.json").read_text())
    throughput = manifest.get("throughput", {})
    return {"tokens_per_s": throughput.get("tokens_per_s") or 0.0, "padding": throughput.get("padding_share") or 0.0,
            "mfu": throughput.get("mfu") or 0.0, "gib": throughput.get("gpu_peak_allocated_gib") or 0.0,
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
                row = run(args.model, args.data, args.steps, VARIANTS[variant], Path(tmp))
                rows[variant].append(row)
                print(f"repeat {repeat + 1} {variant}: {row}", flush=True)
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "unknown"
    print(f"\n{device}; sft LoRA, {args.model}, {args.steps} steps, median of {args.repeats}")
    print(f"{'variant':<18}{'tokens/s':>10}{'ratio':>7}{'padding':>9}{'MFU':>7}{'GiB':>7}{'train s':>9}{'wall s':>8}")
    base = None
    for variant, runs in rows.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            print(f"{variant:<18} failed: {runs[0].get('error')}")
            continue
        median = {k: statistics.median(r[k] for r in ok) for k in ok[0]}
        base = base or (median["tokens_per_s"] if variant == "before" else None)
        ratio = median["tokens_per_s"] / base if base else float("nan")
        print(f"{variant:<18}{median['tokens_per_s']:>10.0f}{ratio:>7.2f}{median['padding']:>9.1%}"
              f"{median['mfu']:>7.1%}{median['gib']:>7.2f}{median['train_runtime']:>9.1f}{median['wall']:>8.1f}")


if __name__ == "__main__":
    main()
