"""``reward`` and ``rlhf`` on real preference data, short runs on this machine.

    python bench/preference_recipes.py [--data ../shared/data/preference_sample.jsonl] [--train 400] \
        [--reward-steps 25] [--rlhf-steps 10] [--max-length 128]

1. reward: the packaged SmolLM2-135M-Instruct with a one-output head (LoRA), trained by ``forge run --recipe reward``
   on the first ``--train`` pairs of a seeded shuffle, evaluated by ``forge eval --suite pairwise-accuracy`` on the
   rest (held out). Compared with chance (0.5), with the same model before training (the randomly initialised head
   the recipe starts from, same seed) and with "the longer completion is better" (a known bias of such data).
2. rlhf: ``forge run --recipe rlhf`` of SmolLM2 (LoRA, GRPO, beta 0.04) against that reward model on held-out
   prompts; the reward and KL to the reference per step, first vs last quarter of the run.

Each step is a fresh ``forge`` process (what a user runs); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "preference_sample.jsonl"
MODEL = "smollm2-135m-instruct"


def forge(work: Path, *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "forge", *args], cwd=work, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"forge {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def untrained_accuracy(held: list[dict], max_length: int, seed: int) -> float:
    """The recipe's starting point: the base with a fresh one-output head, seeded as the recipe seeds it."""
    import torch
    from forge_hf.provider import resolve_model
    from forge_hf.reward_model import Scorer, pairwise
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    source, _ = resolve_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(source)
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    chosen, rejected = pairwise(Scorer(model, tokenizer, max_length, chat=False), held)
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(held)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--reward-steps", type=int, default=25)
    parser.add_argument("--rlhf-steps", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    random.Random(args.seed).shuffle(rows)
    train, held = rows[:args.train], rows[args.train:]
    work = Path(tempfile.mkdtemp(prefix="bench-prefs-"))
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (work / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    short = sorted({r["prompt"] for r in held}, key=len)[:32]  # short prompts: generation stays cheap on a CPU
    (work / "prompts.jsonl").write_text("".join(json.dumps({"prompt": [{"role": "user", "content": p}]}) + "\n"
                                                for p in short))

    result: dict = {"data": args.data, "train_pairs": len(train), "held_out_pairs": len(held),
                    "max_length": args.max_length, "chance": 0.5}
    result["longer_wins_accuracy"] = sum(len(r["chosen"]) > len(r["rejected"]) for r in held) / len(held)
    print(f"longer-wins {result['longer_wins_accuracy']:.3f}", file=sys.stderr, flush=True)
    result["untrained_accuracy"] = untrained_accuracy(held, args.max_length, args.seed)
    print(f"untrained {result['untrained_accuracy']:.3f}", file=sys.stderr, flush=True)

    result["reward_wall_s"] = forge(
        work, "run", "--recipe", "reward", "--model", MODEL, "--data", "train.jsonl", "--set", "eval_split=0",
        "--set", f"max_steps={args.reward_steps}", "--set", f"max_length={args.max_length}",
        "--set", "per_device_train_batch_size=4", "--set", "logging_steps=5", "--set", f"seed={args.seed}",
        "-o", "rm", "--no-tracking")
    result["eval_wall_s"] = forge(work, "eval", "rm", "--suite", "pairwise-accuracy", "--data", "held.jsonl",
                                  "--json")
    evals = sorted((work / "rm" / "artifact" / "evals").glob("pairwise-accuracy-*/eval.json"))
    metrics = json.loads(evals[-1].read_text())["metrics"]
    result["trained_accuracy"] = metrics["accuracy"]["value"]
    result["trained_accuracy_interval"] = [metrics["accuracy"]["low"], metrics["accuracy"]["high"]]
    result["trained_margin"] = metrics["margin"]["value"]
    result["reward_steps"] = args.reward_steps
    print(f"trained {result['trained_accuracy']:.3f} {result['trained_accuracy_interval']}", file=sys.stderr,
          flush=True)
    result["pairs_seen"] = args.reward_steps * 4

    result["rlhf_wall_s"] = forge(
        work, "run", "--recipe", "rlhf", "--model", MODEL, "--data", "prompts.jsonl", "--set", "reward_model=rm",
        "--set", f"max_steps={args.rlhf_steps}", "--set", "num_generations=4", "--set", "per_device_train_batch_size=8",
        "--set", "max_completion_length=32", "--set", "learning_rate=5e-5", "--set", f"seed={args.seed}",
        "-o", "rl", "--no-tracking")
    log = [json.loads(line) for line in (work / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "reward" in r and "kl" in r]
    quarter = max(1, len(steps) // 4)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    result["rlhf"] = {
        "steps": len(steps), "num_generations": 4, "prompts_per_step": 2, "max_completion_length": 32, "beta": 0.04,
        "reward_first_quarter": mean([r["reward"] for r in steps[:quarter]]),
        "reward_last_quarter": mean([r["reward"] for r in steps[-quarter:]]),
        "kl_last_quarter": mean([r["kl"] for r in steps[-quarter:]]),
        "kl_max": max(r["kl"] for r in steps),
        "per_step": [{"step": r["step"], "reward": round(r["reward"], 4), "kl": round(r["kl"], 5)} for r in steps],
    }
    result["work"] = str(work)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
