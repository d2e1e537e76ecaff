"""embed: held-out retrieval before vs after fine-tuning the packaged all-MiniLM-L6-v2 with the ``embed`` recipe
(MultipleNegativesRankingLoss, in-batch negatives).

    nice -n 10 python bench/embed_recall.py [--steps 20] [--batch 32] [--max-length 96] [--repeats 3]

Pairs from real data read by path (never copied into the repository), GSM8K: the last line of a worked solution
(its final computation, e.g. "They raise 750+430+400+700=2280 dollars.") → the problem it solves. Training pairs
from ../shared/data/instruct_sample.jsonl (GSM8K train sample), held-out pairs from instruct_heldout.jsonl (GSM8K
test sample, disjoint); each held-out line retrieves its problem among all 200 held-out problems. (Question →
whole answer is no test: the base model already has recall@10 = 1.000 and recall@1 = 0.99 on it, since the answer
repeats the question's numbers and names.) One
``forge run --recipe embed --set eval_data=...`` per repeat (seeds 1..N: the batches differ) measures the base model
and the fine-tuned one on the same held-out set in the same process; the figure is recall@10 (and @1, MRR) before
vs after, with the mean gain over repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import forge, run_metrics, shared


def write_pairs(source: Path, target: Path) -> int:
    """GSM8K chat records → {anchor: the solution's last line before '#### N', positive: the question}."""
    rows = []
    for line in source.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        question = next(m["content"] for m in messages if m["role"] == "user")
        answer = next(m["content"] for m in messages if m["role"] == "assistant").split("####")[0].strip()
        rows.append({"anchor": answer.splitlines()[-1], "positive": question})
    target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    names = ["recall_at_1", "recall_at_10", "mrr"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_train = write_pairs(shared("instruct_sample.jsonl"), work / "train.jsonl")
        n_held = write_pairs(shared("instruct_heldout.jsonl"), work / "heldout.jsonl")
        print(f"{n_train} training pairs, {n_held} held-out queries (each against {n_held} problems); "
              f"{args.steps} steps × batch {args.batch}, max_length {args.max_length}")
        results = []
        for seed in range(1, args.repeats + 1):
            run = work / f"run-{seed}"
            timing = forge("run", "--recipe", "embed", "--data", work / "train.jsonl", "--set",
                           f"eval_data={work / 'heldout.jsonl'}", "--set", f"max_steps={args.steps}", "--set",
                           f"per_device_train_batch_size={args.batch}", "--set", f"max_length={args.max_length}",
                           "--set", f"seed={seed}", "-o", run, "--no-tracking", cwd=work)
            metrics = run_metrics(run)
            row = {"seed": seed, "wall_s": round(timing["wall"], 1),
                   **{f"before_{k}": metrics[f"eval_base_{k}"] for k in names},
                   **{f"after_{k}": metrics[f"eval_{k}"] for k in names}}
            results.append(row)
            print(json.dumps(row))
        print("\n| metric | before | after (mean of repeats) | gain |")
        print("|---|---|---|---|")
        for k in names:
            before = statistics.mean(r[f"before_{k}"] for r in results)
            after = statistics.mean(r[f"after_{k}"] for r in results)
            spread = [r[f"after_{k}"] for r in results]
            print(f"| {k} | {before:.3f} | {after:.3f} (min {min(spread):.3f}, max {max(spread):.3f}) | "
                  f"{after - before:+.3f} |")


if __name__ == "__main__":
    main()
