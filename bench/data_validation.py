"""Data validation throughput and peak memory: what ``forge run --dry-run`` (and the run) does to a large JSONL chat
file — read, detect, check every record — with ``pii: ignore`` and with the default ``pii: warn`` (every string
scanned). Each measurement is a fresh process (peak RSS of that process, wall and CPU seconds: on a shared machine
the CPU time is the steadier figure); sides alternate, 3 repeats. The file is written to the system's temporary
directory and deleted afterwards.

    python bench/data_validation.py [--mb 1000] [--repeats 3] [--text generated|gsm8k]

``--text generated``: chats of random words, each message ending with a number (the issue's "generated JSONL chat
file"); ``--text gsm8k``: the GSM8K sample chats of ../shared/data repeated (real text, digits and prices in every
message: many more records reach the PII patterns).
"""

from __future__ import annotations

import argparse
import json
import os
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
start, cpu = time.perf_counter(), time.process_time()
loaded = datafiles.check_source(sys.argv[1], "sft", "auto", lambda line: None, pii=sys.argv[2])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(loaded.count, seconds, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, sum(loaded.pii.values()))
"""


def generate(path: Path, megabytes: int, seed: int = 0) -> int:
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    # sentences drawn from pools (generating 1 GB word by word takes minutes); every message gets its own number
    pools = {name: [sentence(n) for n in sizes for _ in range(400)]
             for name, sizes in (("system", [8]), ("user", range(10, 41)), ("assistant", range(20, 121, 2)))}
    target, size, count = megabytes * 1_000_000, 0, 0
    with path.open("w") as handle:
        while size < target:
            record = {"messages": [{"role": role, "content": f"{rng.choice(pool)} {rng.randint(1, 9999)}."}
                                   for role, pool in pools.items()]}
            line = json.dumps(record) + "\n"
            handle.write(line)
            size += len(line)
            count += 1
    return count


def repeat_shared(path: Path, megabytes: int) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import shared

    lines = [line for line in shared("instruct_sample.jsonl").read_text().splitlines(keepends=True) if line.strip()]
    target, size, count = megabytes * 1_000_000, 0, 0
    with path.open("w") as handle:
        while size < target:
            line = lines[count % len(lines)]
            handle.write(line)
            size += len(line)
            count += 1
    return count


def measure(path: Path, pii: str) -> tuple[float, float, float, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), pii], check=True, capture_output=True, text=True)
    _, seconds, cpu, rss_kb, findings = out.stdout.split()
    return float(seconds), float(cpu), int(rss_kb) / 1024, int(findings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text", choices=("generated", "gsm8k"), default="generated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        start = time.perf_counter()
        records = generate(path, args.mb) if args.text == "generated" else repeat_shared(path, args.mb)
        megabytes = path.stat().st_size / 1e6
        print(f"generated {records:,} chat records ({args.text}), {megabytes:.0f} MB in "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
        results: dict[str, list[tuple[float, float, float, int]]] = {"ignore": [], "warn": []}
        for _ in range(args.repeats):
            for pii in ("ignore", "warn"):
                results[pii].append(measure(path, pii))
                print(f"  pii {pii}: {results[pii][-1]}  (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        shape = "3 messages each" if args.text == "generated" else "GSM8K question and answer, repeated"
        print(f"\n{megabytes:.0f} MB JSONL, {records:,} chat records ({shape}); median of {args.repeats}; "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| pii | wall s | MB/s (wall) | CPU s | MB/s (CPU) | peak RSS (MB) | findings |")
        print("|---|---|---|---|---|---|---|")
        for pii, runs in results.items():
            seconds = sorted(r[0] for r in runs)[len(runs) // 2]
            cpu = sorted(r[1] for r in runs)[len(runs) // 2]
            rss = max(r[2] for r in runs)
            print(f"| {pii} | {seconds:.1f} | {megabytes / seconds:.1f} | {cpu:.1f} | {megabytes / cpu:.1f} | "
                  f"{rss:.0f} | {runs[0][3]:,} |")


if __name__ == "__main__":
    main()
