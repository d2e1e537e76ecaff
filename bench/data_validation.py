"""Data validation throughput and peak memory: what ``forge run --dry-run`` (and the run) does to a large JSONL chat
file — read, detect, check every record — with ``pii: ignore`` and with the default ``pii: warn`` (every string
scanned). Each measurement is a fresh process (peak RSS of that process); sides alternate, 3 repeats.

    python bench/data_validation.py [--mb 200] [--repeats 3]
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

_SENTENCE = ("the model learns to answer questions about numbers prices dates and places with short clear sentences "
             "while keeping the format of the examples it was given during fine tuning")
WORDS = tuple(_SENTENCE.split())

CHILD = """
import sys, time, resource
from forge import datafiles
start = time.perf_counter()
loaded = datafiles.check_source(sys.argv[1], "sft", "auto", lambda line: None, pii=sys.argv[2])
seconds = time.perf_counter() - start
print(loaded.count, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def generate(path: Path, megabytes: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    target, size, count = megabytes * 1_000_000, 0, 0
    with path.open("w") as handle:
        while size < target:
            def sentence(n: int) -> str:
                return " ".join(rng.choice(WORDS) for _ in range(n)) + f" {rng.randint(1, 9999)}."
            record = {"messages": [{"role": "system", "content": sentence(8)},
                                   {"role": "user", "content": sentence(rng.randint(10, 40))},
                                   {"role": "assistant", "content": sentence(rng.randint(20, 120))}]}
            line = json.dumps(record) + "\n"
            handle.write(line)
            size += len(line)
            count += 1
    return count


def measure(path: Path, pii: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), pii], check=True, capture_output=True, text=True)
    _, seconds, rss_kb = out.stdout.split()
    return float(seconds), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        start = time.perf_counter()
        records = generate(path, args.mb)
        megabytes = path.stat().st_size / 1e6
        print(f"generated {records:,} chat records, {megabytes:.0f} MB in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        results: dict[str, list[tuple[float, float]]] = {"ignore": [], "warn": []}
        for _ in range(args.repeats):
            for pii in ("ignore", "warn"):
                results[pii].append(measure(path, pii))
                print(f"  pii {pii}: {results[pii][-1]}", file=sys.stderr)
        print(f"\n{megabytes:.0f} MB JSONL, {records:,} chat records (3 messages each); median of {args.repeats}\n")
        print("| pii | seconds | MB/s | peak RSS (MB) |")
        print("|---|---|---|---|")
        for pii, runs in results.items():
            seconds = sorted(s for s, _ in runs)[len(runs) // 2]
            rss = max(r for _, r in runs)
            print(f"| {pii} | {seconds:.1f} | {megabytes / seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
