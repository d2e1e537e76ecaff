"""The same run with the unsloth and the hf providers at equal settings: real tokens/s and peak GPU memory.

    python bench/unsloth_vs_hf.py --model /tmp/models/llama1b --data instruct_sample.jsonl [--recipe qlora]
        [--steps 40] [--repeats 3] [--set per_device_train_batch_size=16 ...]

Needs a CUDA GPU and the unsloth package (see docs/unsloth.md). Each run is a fresh process; the providers alternate
within each repeat. Tokens/s and memory come from forge's throughput telemetry (counted on the batches the trainer
builds, the same way for both providers). Packing is off on both sides (equal settings).
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


def run(provider: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / f"{provider}-{time.time_ns()}"
    command = [sys.executable, "-m", "forge", "run", "--recipe", args.recipe, "--provider", provider, "--model",
               args.model, "--set", f"max_steps={args.steps}", "--set", "eval_split=0", "--set", "logging_steps=10",
               "--set", "save_steps=100000", "-o", str(out), "--no-tracking"]
    if args.recipe in ("sft", "qlora"):
        command += ["--set", "packing=false"]
    if args.data:
        command += ["--data", args.data]
    for item in args.set:
        command += ["--set", item]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        raise SystemExit(f"{provider} run failed:\n{result.stderr[-3000:]}")
    manifest = json.loads((out / "forge.json").read_text())
    throughput = manifest.get("throughput", {})
    return {"tokens_per_s": throughput.get("tokens_per_s") or 0.0,
            "peak_gib": throughput.get("gpu_peak_allocated_gib") or 0.0, "mfu": throughput.get("mfu") or 0.0,
            "train_runtime": manifest["metrics"]["train_runtime"], "wall": time.perf_counter() - start,
            "provider": manifest["provider"]["name"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None)
    parser.add_argument("--recipe", default="qlora")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="extra --set for both sides")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/unsloth_vs_hf.py needs a CUDA GPU (Unsloth loads models on GPUs only)")
    rows: dict[str, list[dict[str, Any]]] = {"hf": [], "unsloth": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for provider in rows:
                rows[provider].append(run(provider, args, Path(tmp)))
                print(f"repeat {repeat + 1} {provider}: {rows[provider][-1]}", flush=True)
    print(f"\n{torch.cuda.get_device_name(0)}, {args.model}, {args.recipe}, {args.steps} steps, {args.set or ''}, "
          f"median of {args.repeats}")
    print(f"{'':<10}{'tokens/s':>10}{'peak GiB':>10}{'MFU':>7}{'train s':>9}{'wall s':>8}")
    median = {p: {k: statistics.median(r[k] for r in runs) for k in ("tokens_per_s", "peak_gib", "mfu",
                                                                      "train_runtime", "wall")}
              for p, runs in rows.items()}
    for name, row in median.items():
        print(f"{name:<10}{row['tokens_per_s']:>10.0f}{row['peak_gib']:>10.2f}{row['mfu']:>7.1%}"
              f"{row['train_runtime']:>9.1f}{row['wall']:>8.1f}")
    print(f"unsloth/hf: speed {median['unsloth']['tokens_per_s'] / median['hf']['tokens_per_s']:.2f}x, "
          f"memory {median['unsloth']['peak_gib'] / median['hf']['peak_gib']:.2f}x")


if __name__ == "__main__":
    main()
