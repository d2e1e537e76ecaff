"""qlora (4-bit NF4 base + LoRA) against LoRA on the full-precision base: peak memory, side by side.

    python bench/qlora_memory.py [--model smollm2-135m-instruct] [--steps 5]

On CPU the peak is the process's resident set (ru_maxrss): it includes the Python/torch runtime common to both and the
moment the full-precision checkpoint is read before quantization. The model's own footprint after loading
(transformers' get_memory_footprint, recorded in the manifest by the hf provider) is reported next to it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import forge, run_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for recipe in ("sft", "qlora"):
            run = work / recipe
            measured = forge("run", "--recipe", recipe, "--model", args.model, "--set", f"max_steps={args.steps}",
                             "--set", "eval_split=0", "--set", "gradient_checkpointing=false", "--no-tracking",
                             "-o", run, cwd=work, peak_rss=True)
            footprint = json.loads((run / "forge.json").read_text())["provider"]["memory_footprint_mb"]
            rows[recipe] = (measured["peak_rss_gib"], run_metrics(run)["train_runtime"], footprint)
    print(f"{args.model}, {args.steps} steps, LoRA r=16 all-linear, batch 4, CPU")
    print(f"{'recipe':<8}{'peak RSS GiB':>14}{'model MiB':>11}{'train s':>10}")
    for recipe, (rss, runtime, footprint) in rows.items():
        print(f"{recipe:<8}{rss:>14.2f}{footprint:>11.0f}{runtime:>10.1f}")
    print(f"peak RSS ratio (qlora/LoRA): {rows['qlora'][0] / rows['sft'][0]:.2f}; "
          f"model footprint ratio: {rows['qlora'][2] / rows['sft'][2]:.2f}")


if __name__ == "__main__":
    main()
