"""Small helpers shared by the benchmark scripts (run `forge` as a user would, read what a run wrote)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# ../shared/data beside the checkout (a worktree under /work/wt/NAME looks one level further up); FORGE_SHARED_DATA
# overrides.
SHARED_DATA = Path(os.environ.get("FORGE_SHARED_DATA") or next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents[2:4] if (p / "shared" / "data").is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "data"))

RSS_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def forge(*args: str, cwd: Path, peak_rss: bool = False) -> dict[str, float]:
    """Run `forge ARGS` in a fresh process; wall seconds and, if asked, the peak RSS (GiB) of that process."""
    command = [sys.executable, "-m", "forge", *map(str, args)]
    start = time.perf_counter()
    if peak_rss:
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, *command], check=True, capture_output=True,
                             text=True, cwd=cwd)
        rss = int(out.stdout.strip().splitlines()[-1]) / 2**20
    else:
        subprocess.run(command, check=True, capture_output=True, cwd=cwd)
        rss = float("nan")
    return {"wall": time.perf_counter() - start, "peak_rss_gib": rss}


def run_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "forge.json").read_text())["metrics"]


def metric_rows(run: Path) -> list[dict[str, float]]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        raise SystemExit(f"{path} not found: the benchmarks read the team's shared datasets by path")
    return path


def chat_prompt_ids(tokenizer: object, records_file: Path, count: int) -> list[list[int]]:
    """Token ids of the first user turn of the first ``count`` chats in ``records_file``, through the chat template
    with the generation prompt (what a chat request to the model holds)."""
    records = [json.loads(x) for x in records_file.read_text().splitlines()[:count]]
    texts = [tokenizer.apply_chat_template(r["messages"][:1], add_generation_prompt=True,  # type: ignore[attr-defined]
                                           tokenize=False) for r in records]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]  # type: ignore[operator]


def torch_greedy(model: object, pad_token_id: int | None, n: int):  # type: ignore[no-untyped-def]
    """``generate(ids) -> exactly n new token ids``: torch eager greedy decoding with the KV cache (HF generate,
    stops off so every engine generates the same count)."""
    import torch

    def generate(ids: list[int]) -> list[int]:
        tensor = torch.tensor([ids])
        with torch.inference_mode():
            out = model.generate(tensor, attention_mask=torch.ones_like(tensor),  # type: ignore[attr-defined]
                                 max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad_token_id)
        return out[0, len(ids):].tolist()

    return generate


def greedy_agreement(logits_of, prompts: list[list[int]], reference: list[list[int]]) -> float:  # type: ignore[no-untyped-def]
    """Share of the reference's greedy tokens an engine predicts, teacher-forced on the reference continuation
    (``logits_of(ids) -> [len(ids), vocab]``): per-token agreement, steadier than whole-continuation matches."""
    import numpy as np

    agree = total = 0
    for ids, ref in zip(prompts, reference, strict=True):
        predicted = np.asarray(logits_of(ids + ref))[len(ids) - 1: len(ids) - 1 + len(ref)].argmax(-1)
        agree += int((predicted == np.asarray(ref)).sum())
        total += len(ref)
    return agree / total
