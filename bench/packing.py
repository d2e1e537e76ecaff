"""Packing on vs off for `sft` on data of varied lengths: training tokens per second, measured side by side.

    python bench/packing.py [--model smollm2-135m-instruct] [--data ../shared/data/instruct_sample.jsonl] [--steps 15]

Tokens are TRL's `num_tokens` (real, non-padding tokens seen); time is the Trainer's `train_runtime`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import forge, metric_rows, run_metrics, shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    data = Path(args.data) if args.data else shared("instruct_sample.jsonl")
    lengths = [len(json.dumps(json.loads(x))) for x in data.read_text().splitlines()[:1000]]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for packing in (False, True):
            run = work / f"packing-{packing}"
            forge("run", "--recipe", "sft", "--model", args.model, "--data", data, "--set", f"max_steps={args.steps}",
                  "--set", f"packing={str(packing).lower()}", "--set", f"max_length={args.max_length}",
                  "--set", "eval_split=0", "--set", "logging_steps=1", "--no-tracking", "-o", run, cwd=work)
            tokens = max(r.get("num_tokens", 0) for r in metric_rows(run))
            runtime = run_metrics(run)["train_runtime"]
            results[packing] = (tokens, runtime, tokens / runtime)
    print(f"{args.model}, {data.name} (record sizes {min(lengths)}-{max(lengths)} chars), {args.steps} steps, "
          f"batch 4, max_length {args.max_length}")
    print(f"{'packing':<10}{'tokens':>10}{'seconds':>10}{'tokens/s':>10}")
    for packing, (tokens, runtime, rate) in results.items():
        print(f"{'on' if packing else 'off':<10}{tokens:>10.0f}{runtime:>10.1f}{rate:>10.0f}")
    print(f"tokens/s ratio (on/off): {results[True][2] / results[False][2]:.2f}")


if __name__ == "__main__":
    main()
