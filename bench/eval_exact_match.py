"""exact-match eval throughput: batched greedy generation (left padding, ``batch_size`` prompts per call) vs one
prompt at a time, on the packaged SmolLM2-135M-Instruct, GSM8K questions from ../shared/data/instruct_heldout.jsonl.

    python bench/eval_exact_match.py [--questions 32] [--max-new-tokens 48] [--batch-size 16] [--repeats 3]

Both sides call the ``exact-match`` evaluator in this process as ``forge eval`` does (model loaded once per call,
as in a real eval; the load is timed apart and excluded), alternating sides, ``--repeats`` times; the figure is the
ratio of median generation times. Also reports how many answers batched and unbatched generation agree on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import shared


def packaged_smollm(work: Path) -> Path:
    """A ``causal-lm`` artifact holding the packaged SmolLM2 (files linked, plus a manifest)."""
    from forge_hf.provider import resolve_model

    source, _ = resolve_model("smollm2-135m-instruct")
    artifact = work / "smollm2"
    artifact.mkdir()
    for file in Path(source).iterdir():
        (artifact / file.name).symlink_to(file)
    (artifact / "forge.json").write_text(json.dumps({"schema": 1, "type": "artifact", "kind": "causal-lm",
                                                     "base_model": "smollm2-135m-instruct"}))
    return artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import forge
    import forge_hf.eval_lm as eval_lm
    import torch
    from forge.plugins import load_plugins

    evaluator = load_plugins().get("evaluators", "exact-match").item
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        artifact = forge.Artifact.load(packaged_smollm(work))
        data = work / "gsm8k.jsonl"
        lines = shared("instruct_heldout.jsonl").read_text().splitlines()[:args.questions]
        data.write_text("\n".join(lines) + "\n")

        generation: dict[int, list[float]] = {1: [], args.batch_size: []}
        loads: list[float] = []
        outputs: dict[int, list[str]] = {}
        original = eval_lm.generate_all

        def timed_generate_all(lm, prompts, max_new_tokens, request, desc):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            result = original(lm, prompts, max_new_tokens, request, desc)
            generation[lm.batch_size].append(time.perf_counter() - start)
            return result

        eval_lm.generate_all = timed_generate_all
        original_load = eval_lm.load_lm

        def timed_load(*a, **k):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            lm = original_load(*a, **k)
            loads.append(time.perf_counter() - start)
            return lm

        eval_lm.load_lm = timed_load
        for repeat in range(args.repeats):
            for size in ((1, args.batch_size) if repeat % 2 == 0 else (args.batch_size, 1)):
                request = forge.EvalRequest(data=data, options={"batch_size": size,
                                                                "max_new_tokens": args.max_new_tokens},
                                            output_dir=work / "out", seed=0, log=lambda message: None)
                result = evaluator.run(artifact, request)
                outputs[size] = [r["output"] for r in result.records]
                print(f"repeat {repeat + 1} batch_size={size}: generation {generation[size][-1]:.2f} s, "
                      f"exact_match {result.metrics['exact_match']:.3f}", flush=True)
    one, many = statistics.median(generation[1]), statistics.median(generation[args.batch_size])
    tokens = args.questions * args.max_new_tokens
    agree = sum(a == b for a, b in zip(outputs[1], outputs[args.batch_size], strict=True))
    print(f"\n{args.questions} questions × ≤{args.max_new_tokens} new tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model load {statistics.median(loads):.2f} s (excluded)")
    print("| side | median generation s | ≤ tokens/s | vs one at a time |\n|---|---|---|---|")
    print(f"| one prompt at a time | {one:.2f} | {tokens / one:.0f} | 1.00× |")
    print(f"| batched ({args.batch_size}, left padding) | {many:.2f} | {tokens / many:.0f} | **{one / many:.2f}×** |")
    print(f"answers identical batched vs one at a time: {agree}/{args.questions}")


if __name__ == "__main__":
    main()
