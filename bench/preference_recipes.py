"""``reward`` and ``rlhf`` on real preference data, short runs on this machine.

    python bench/preference_recipes.py [--data ../shared/data/preference_sample.jsonl] [--train 400] \
        [--format chat] [--max-length 512] [--reward-epochs 1] [--rlhf-steps 32] [--rlhf-prompts 8] \
        [--rlhf-lr 1e-3] [--samples 16] [--reward-run DIR] [--stage all|reward|rlhf]

1. reward: the packaged SmolLM2-135M-Instruct with a one-output head (LoRA), trained by ``forge run --recipe reward``
   on the first ``--train`` pairs of a seeded shuffle, evaluated by ``forge eval --suite pairwise-accuracy`` on the
   rest (held out). Compared with chance (0.5), with the same model before training (the randomly initialised head
   the recipe starts from, same seed) and with "the longer completion is better" (a known bias of such data).
   ``--format chat`` gives the pairs as chat messages (the model's chat template frames prompt and answer),
   ``text`` as the plain strings of the file (prompt + answer + EOS).
2. rlhf: ``forge run --recipe rlhf`` of SmolLM2 (LoRA, GRPO) against that reward model on ``--rlhf-prompts`` of the
   shortest held-out prompts, each seen every ``prompts / 2`` steps, so the per-step reward compares like with like.
   Judged by the policy's own reward before and after: ``--samples`` completions per prompt sampled at the training
   temperature from the base and from the trained policy, all scored by the reward model (mean ± standard error,
   and the paired gain per prompt). KL to the reference per step.

``--reward-run DIR`` reuses a finished reward run (skips stage 1). Each forge step is a fresh ``forge`` process
(what a user runs); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import shared

MODEL = "smollm2-135m-instruct"


def forge(work: Path, *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "forge", *args], cwd=work, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"forge {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def as_chat(row: dict[str, str]) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


def untrained_accuracy(held: list[dict], max_length: int, chat: bool, seed: int) -> float:
    """The recipe's starting point: the base with a fresh one-output head, seeded as the recipe seeds it."""
    import torch
    from forge_hf.provider import resolve_model
    from forge_hf.recipes.reward import init_score_head
    from forge_hf.reward_model import Scorer, pairwise
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    source, _ = resolve_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(source)
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    set_seed(seed)
    init_score_head(model)
    chosen, rejected = pairwise(Scorer(model, tokenizer, max_length, chat=chat), held)
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(held)


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
    return mean, math.sqrt(var / len(values))


def policy_rewards(policy: str | Path, prompts: list[list[dict]], reward_run: Path, samples: int, max_new: int,
                   temperature: float, seed: int) -> list[list[float]]:
    """Reward-model scores of ``samples`` completions per prompt, sampled from ``policy`` (the base model's alias or
    a forge run) at ``temperature``: one list per prompt."""
    import torch
    from forge.artifacts import Artifact
    from forge_hf.causal_lm import load_causal_lm
    from forge_hf.provider import resolve_model
    from forge_hf.reward_model import load_scorer
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    if Path(policy).is_dir():
        lm = load_causal_lm(Artifact.load(Path(policy)))
        model, tokenizer = lm.model, lm.tokenizer
    else:
        source, _ = resolve_model(str(policy))
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    scorer = load_scorer(Artifact.load(reward_run).path, device="cpu")
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    set_seed(seed)
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    completions: list[list[str]] = [[] for _ in prompts]
    with torch.no_grad():
        for _ in range(samples):
            out = model.generate(**batch, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id)
            for i, row in enumerate(out[:, batch["input_ids"].shape[1]:]):
                completions[i].append(tokenizer.decode(row, skip_special_tokens=True))
    scores = scorer.score([{"prompt": p, "completion": [{"role": "assistant", "content": c}]}
                           for p, cs in zip(prompts, completions, strict=True) for c in cs])
    return [scores[i * samples:(i + 1) * samples] for i in range(len(prompts))]


def reward_stage(args: argparse.Namespace, work: Path, train: list[dict], held: list[dict], chat: bool,
                 result: dict) -> Path:
    steps = args.reward_steps or math.ceil(args.reward_epochs * len(train) / 4)
    result["longer_wins_accuracy"] = sum(len(r["chosen"]) > len(r["rejected"]) for r in held) / len(held)
    print(f"longer-wins {result['longer_wins_accuracy']:.3f}", file=sys.stderr, flush=True)
    rows = [as_chat(r) for r in held] if chat else held
    result["untrained_accuracy"] = untrained_accuracy(rows, args.max_length, chat, args.seed)
    print(f"untrained {result['untrained_accuracy']:.3f}", file=sys.stderr, flush=True)
    result["reward_wall_s"] = forge(
        work, "run", "--recipe", "reward", "--model", MODEL, "--data", "train.jsonl", "--set", "eval_split=0",
        "--set", f"max_steps={steps}", "--set", f"max_length={args.max_length}",
        "--set", "per_device_train_batch_size=4", "--set", "logging_steps=5", "--set", f"seed={args.seed}",
        "--set", f"learning_rate={args.reward_lr}", "-o", "rm", "--no-tracking")
    result["eval_wall_s"] = forge(work, "eval", "rm", "--suite", "pairwise-accuracy", "--data", "held.jsonl",
                                  "--json")
    evals = sorted((work / "rm" / "artifact" / "evals").glob("pairwise-accuracy-*/eval.json"))
    metrics = json.loads(evals[-1].read_text())["metrics"]
    result.update({
        "trained_accuracy": metrics["accuracy"]["value"],
        "trained_accuracy_interval": [metrics["accuracy"]["low"], metrics["accuracy"]["high"]],
        "trained_margin": metrics["margin"]["value"], "reward_steps": steps, "pairs_seen": steps * 4,
        "reward_train_log": [{k: round(v, 4) for k, v in r.items() if k in ("step", "loss", "accuracy", "margin")}
                             for r in (json.loads(x) for x in (work / "rm" / "metrics.jsonl").read_text()
                                       .splitlines()) if "loss" in r],
    })
    print(f"trained {result['trained_accuracy']:.3f} {result['trained_accuracy_interval']}", file=sys.stderr,
          flush=True)
    return work / "rm"


def rlhf_stage(args: argparse.Namespace, work: Path, held: list[dict], reward_run: Path, result: dict) -> None:
    short = sorted({r["prompt"] for r in held}, key=len)[:args.rlhf_prompts]  # generation stays cheap on a CPU
    prompts = [[{"role": "user", "content": p}] for p in short]
    (work / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    before = policy_rewards(MODEL, prompts, reward_run, args.samples, args.max_new, 1.0, args.seed)
    print(f"policy reward before {mean_se([s for p in before for s in p])}", file=sys.stderr, flush=True)
    result["rlhf_wall_s"] = forge(
        work, "run", "--recipe", "rlhf", "--model", MODEL, "--data", "prompts.jsonl", "--set",
        f"reward_model={reward_run}", "--set", f"max_steps={args.rlhf_steps}", "--set", "num_generations=4",
        "--set", "per_device_train_batch_size=8", "--set", f"max_completion_length={args.max_new}",
        "--set", f"learning_rate={args.rlhf_lr}", "--set", f"beta={args.beta}", "--set", f"seed={args.seed}",
        "-o", "rl", "--no-tracking")
    after = policy_rewards(work / "rl", prompts, reward_run, args.samples, args.max_new, 1.0, args.seed)
    log = [json.loads(line) for line in (work / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "reward" in r and "kl" in r]
    per_pass = max(1, args.rlhf_prompts // 2)  # 2 prompts a step: every prompt once per pass
    passes = [steps[i:i + per_pass] for i in range(0, len(steps), per_pass)]
    flat_before, flat_after = [s for p in before for s in p], [s for p in after for s in p]
    gains = [sum(a) / len(a) - sum(b) / len(b) for a, b in zip(after, before, strict=True)]
    result["rlhf"] = {
        "steps": len(steps), "prompts": len(prompts), "num_generations": 4, "prompts_per_step": 2,
        "max_completion_length": args.max_new, "beta": args.beta, "learning_rate": args.rlhf_lr,
        "policy_reward_before": mean_se(flat_before), "policy_reward_after": mean_se(flat_after),
        "paired_gain_per_prompt": mean_se(gains), "prompts_improved": sum(g > 0 for g in gains),
        "samples_per_prompt": args.samples,
        "reward_per_pass": [round(sum(r["reward"] for r in p) / len(p), 4) for p in passes],
        "kl_per_pass": [round(sum(r["kl"] for r in p) / len(p), 6) for p in passes],
        "per_step": [{"step": r["step"], "reward": round(r["reward"], 4), "kl": round(r["kl"], 6)} for r in steps],
    }
    print(json.dumps(result["rlhf"]), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None,
                        help="preference pairs (default ../shared/data/preference_sample.jsonl)")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--format", choices=("chat", "text"), default="chat")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--reward-epochs", type=float, default=1.0)
    parser.add_argument("--reward-steps", type=int, default=0, help="overrides --reward-epochs")
    parser.add_argument("--reward-lr", type=float, default=1e-4)
    parser.add_argument("--reward-run", default=None, help="a finished reward run to reuse (skips stage 1)")
    parser.add_argument("--rlhf-steps", type=int, default=32)
    parser.add_argument("--rlhf-prompts", type=int, default=8)
    parser.add_argument("--rlhf-lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--max-new", type=int, default=32)
    parser.add_argument("--samples", type=int, default=16, help="completions per prompt for the before/after reward")
    parser.add_argument("--stage", choices=("all", "reward", "rlhf"), default="all")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    data = Path(args.data) if args.data else shared("preference_sample.jsonl")
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    random.Random(args.seed).shuffle(rows)
    train, held = rows[:args.train], rows[args.train:]
    chat = args.format == "chat"
    work = Path(tempfile.mkdtemp(prefix="bench-prefs-"))
    (work / "train.jsonl").write_text("".join(json.dumps(as_chat(r) if chat else r) + "\n" for r in train))
    (work / "held.jsonl").write_text("".join(json.dumps(as_chat(r) if chat else r) + "\n" for r in held))
    result: dict = {"data": str(data), "train_pairs": len(train), "held_out_pairs": len(held), "format": args.format,
                    "max_length": args.max_length, "chance": 0.5, "work": str(work)}
    print(f"work {work}", file=sys.stderr, flush=True)
    reward_run = Path(args.reward_run).resolve() if args.reward_run else None
    if reward_run is None and args.stage in ("all", "reward"):
        reward_run = reward_stage(args, work, train, held, chat, result)
    if args.stage in ("all", "rlhf"):
        if reward_run is None:
            raise SystemExit("--stage rlhf needs --reward-run DIR")
        result["reward_run"] = str(reward_run)
        rlhf_stage(args, work, held, reward_run, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
