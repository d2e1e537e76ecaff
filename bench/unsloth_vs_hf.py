"""The same qlora run with the unsloth and the hf providers: tokens/s and peak GPU memory, side by side.

    python bench/unsloth_vs_hf.py [--model smollm2-135m-instruct] [--data chat.jsonl] [--steps 30]

Needs a CUDA GPU and the unsloth package (see docs/unsloth.md); each provider runs in its own process, alternating.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import json, runpy, sys, torch
sys.argv = ["forge"] + sys.argv[1:]
torch.cuda.reset_peak_memory_stats()
try:
    runpy.run_module("forge", run_name="__main__")
except SystemExit as done:
    code = done.code
print(json.dumps({"peak_gib": torch.cuda.max_memory_allocated() / 2**30}), file=sys.stderr)
"""


def run(provider: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    out = work / provider
    command = [sys.executable, "-c", PROBE, "run", "--recipe", "qlora", "--provider", provider, "--model",
               args.model, "--set", f"max_steps={args.steps}", "--set", "eval_split=0", "--set", "logging_steps=1",
               "-o", str(out), "--no-tracking"] + (["--data", args.data] if args.data else [])
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        raise SystemExit(f"{provider} run failed:\n{result.stderr[-3000:]}")
    peak = json.loads(result.stderr.strip().splitlines()[-1])["peak_gib"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = max(r.get("num_tokens", 0) for r in rows)
    runtime = json.loads((out / "forge.json").read_text())["metrics"]["train_runtime"]
    return {"tokens_per_s": tokens / runtime, "peak_gib": peak, "train_runtime": runtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/unsloth_vs_hf.py needs a CUDA GPU (Unsloth loads models on GPUs only)")
    with tempfile.TemporaryDirectory() as tmp:
        hf = run("hf", args, Path(tmp))
        unsloth = run("unsloth", args, Path(tmp))
    print(f"{torch.cuda.get_device_name(0)}, {args.model}, qlora, {args.steps} steps")
    print(f"{'':<10}{'tokens/s':>12}{'peak GiB':>10}")
    for name, row in (("hf", hf), ("unsloth", unsloth)):
        print(f"{name:<10}{row['tokens_per_s']:>12.0f}{row['peak_gib']:>10.2f}")
    print(f"unsloth/hf: speed {unsloth['tokens_per_s'] / hf['tokens_per_s']:.2f}x, "
          f"memory {unsloth['peak_gib'] / hf['peak_gib']:.2f}x")


if __name__ == "__main__":
    main()
