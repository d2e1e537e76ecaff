"""Load on `forge serve`: req/s, p50/p99 latency and status counts at C concurrent clients, for each server given,
side by side (the servers alternate within each repeat).

    python bench/serve_load.py [--clients 64] [--requests 192] [--repeats 3] [--max-tokens 16]
                               [--server "LABEL=ARTIFACT [forge serve flags]" ...]

Without --server: trains `sft` (LoRA, 2 steps) of the packaged SmolLM2-135M-Instruct and serves it twice: one
request decoded at a time (`--max-batch-size 1`, what the server did before batched decoding) and batched
(`--max-batch-size 16` and `64`). LM servers (answering /v1/models) get chat requests with `max_tokens`
--max-tokens, greedy; other servers get `POST /predict {"text": ...}`. Each server is a real process on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import free_port

QUESTIONS = ["What is the capital of France?", "Give me a word that rhymes with cat.", "How many legs has a spider?",
             "Name a primary colour.", "What is two plus three?", "Say hello in Spanish.",
             "What do bees make?", "Which planet is closest to the sun?"]


def start(artifact: str, flags: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", artifact, "--port", str(port), "--max-queue",
                             "1000", "--timeout-s", "600", *flags], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"forge serve {artifact} exited {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"forge serve {artifact}: not ready after 600 s")


async def load(url: str, clients: int, requests: int, max_tokens: int) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:
        is_lm = (await client.get(f"{url}/v1/models")).status_code == 200
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        counter = iter(range(requests))

        async def one(i: int) -> None:
            question = QUESTIONS[i % len(QUESTIONS)]
            begun = time.perf_counter()
            try:
                if is_lm:
                    r = await client.post(f"{url}/v1/chat/completions", json={
                        "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
                        "temperature": 0})
                else:
                    r = await client.post(f"{url}/predict", json={"text": question})
                statuses[str(r.status_code)] += 1
            except httpx.HTTPError as error:
                statuses[type(error).__name__] += 1
            latencies.append(time.perf_counter() - begun)

        async def worker() -> None:
            for i in counter:
                await one(i)

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - begun
    latencies.sort()
    return {"rps": requests / elapsed, "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], "statuses": dict(statuses)}


def default_servers(work: Path) -> list[tuple[str, str, list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    subprocess.run([sys.executable, "-m", "forge", "run", "--recipe", "sft", "--set", "max_steps=2", "-o",
                    str(work / "run"), "--no-tracking"], check=True, cwd=work, env=env, capture_output=True)
    run = str(work / "run")
    return [("one at a time (--max-batch-size 1)", run, ["--max-batch-size", "1"]),
            ("batched (--max-batch-size 16)", run, ["--max-batch-size", "16"]),
            ("batched (--max-batch-size 64)", run, ["--max-batch-size", "64"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--server", action="append", default=[], help='"LABEL=ARTIFACT [flags]"')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers = []
        for spec in args.server:
            label, rest = spec.split("=", 1)
            artifact, *flags = shlex.split(rest)
            servers.append((label, artifact, flags))
        servers = servers or default_servers(Path(tmp))
        results: dict[str, list[dict[str, object]]] = {label: [] for label, _, _ in servers}
        for repeat in range(args.repeats):
            for label, artifact, flags in servers:
                proc, url = start(artifact, flags)
                try:
                    result = asyncio.run(load(url, args.clients, args.requests, args.max_tokens))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                results[label].append(result)
                print(f"repeat {repeat + 1} {label}: {result['rps']:.2f} req/s, p50 {result['p50']:.2f} s, "
                      f"p99 {result['p99']:.2f} s, {result['statuses']}", flush=True)
    print(f"\n{args.clients} clients, {args.requests} requests, max_tokens {args.max_tokens}, "
          f"{os.cpu_count()} CPUs; medians of {args.repeats} repeats\n")
    print("| server | req/s | p50 s | p99 s | statuses (all repeats) | ratio |")
    print("|---|---|---|---|---|---|")
    base = None
    for label, runs in results.items():
        rps = statistics.median(float(r["rps"]) for r in runs)  # type: ignore[arg-type]
        base = base or rps
        statuses: Counter[str] = Counter()
        for r in runs:
            statuses.update(r["statuses"])  # type: ignore[arg-type]
        p50 = statistics.median(float(r["p50"]) for r in runs)  # type: ignore[arg-type]
        p99 = statistics.median(float(r["p99"]) for r in runs)  # type: ignore[arg-type]
        print(f"| {label} | {rps:.2f} | {p50:.2f} | {p99:.2f} | {dict(statuses)} | {rps / base:.1f}× |")


if __name__ == "__main__":
    main()
