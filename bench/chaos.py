"""Issue 20's probes, repeated: does anything wedge or corrupt when runs are killed, share state, and servers get
bad input? Prints, per probe, what held and what did not (exit 1 when something did not hold).

    python bench/chaos.py [--kills 4] [--concurrent 4] [--clients 64] [--requests 192] [--seed 0] [--only NAME]

Probes (tiny models built here, everything on loopback; a few minutes in all on 2 CPUs):
  kill      `forge run --recipe sft` of a tiny Llama, SIGKILLed at --kills random moments (from start-up to the
            final save), then `--resume` (killed before the run directory existed: run again): every run completes,
            its per-step losses and train_loss equal an uninterrupted run's, no manifest said "completed" early.
  mlflow    --concurrent first runs at once in a fresh folder, tracking to the embedded ./mlflow.db: all exit 0, all
            MLflow runs FINISHED, and a later run in that folder works (the store is not corrupted).
  resume    one run killed, then two `forge run --resume` of it at once: one trains, the other is refused (exit 2,
            "in use") while the first lives; the run completes with an uninterrupted run's losses.
  serve     `forge serve` of the kill probe's run, --clients concurrent clients sending --requests requests, one in four
            malicious (empty prompt streamed, seed 2**70, 50 stop strings, lone surrogate, n=3, over-long prompt,
            broken JSON, 2 MB body, a stream dropped by its client); then half-open connections; then SIGTERM during
            a stream. Every valid request must get 200 with what it gets alone, every bad one a 4xx, /health 200
            after, and the process must stop within its grace period.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from support import free_port  # noqa: E402

CHAT = [{"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                      {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
        for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")] * 4]
SFT = ["--recipe", "sft", "--set", "max_steps=12", "--set", "save_steps=3", "--set", "logging_steps=1",
       "--set", "eval_split=0", "--set", "per_device_train_batch_size=2"]


class Work:
    """A scratch folder, the environment `forge` runs in (testkit plugin on the path for the descent recipe)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        site = root / "site"
        site.mkdir()
        shutil.copy(REPO / "tests" / "fixture_plugins" / "forge_testkit.py", site / "forge_testkit.py")
        info = site / "forge_testkit-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forge-testkit\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text("[forge]\ntestkit = forge_testkit\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), self.env.get("PYTHONPATH", "")]))
        self.env["PYTHONUNBUFFERED"] = "1"

    def run(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "forge", *args], cwd=cwd or self.root, env={**self.env, **env},
                              capture_output=True, text=True, timeout=900)

    def popen(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "forge", *args], cwd=cwd or self.root,
                                env={**self.env, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def manifest(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "forge.json").read_text())
    except (OSError, ValueError):
        return {}


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def same(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(b[k])) for k in a)


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, bool, str]] = []

    def check(self, probe: str, what: str, held: bool, detail: str = "") -> None:
        self.rows.append((probe, what, held, detail))
        print(f"  [{'held' if held else 'FAILED'}] {what}" + (f" ({detail})" if detail else ""), flush=True)

    def table(self) -> str:
        lines = ["| probe | check | held | detail |", "|---|---|---|---|"]
        lines += [f"| {p} | {w} | {'yes' if h else '**no**'} | {d} |" for p, w, h, d in self.rows]
        return "\n".join(lines)


# -- kill -9 at random moments, then --resume ------------------------------------------------------------------------
def probe_kill(work: Work, report: Report, data: Path, model: Path, kills: int, rng: random.Random) -> Path:
    print("kill: SIGKILL at random moments, then --resume", flush=True)
    args = ["run", *SFT, "--model", str(model), "--data", str(data), "--no-tracking"]
    begun = time.monotonic()
    straight = work.root / "straight"
    result = work.run(*args, "-o", str(straight))
    if result.returncode:
        raise SystemExit(f"the uninterrupted run failed:\n{result.stderr}")
    duration = time.monotonic() - begun
    reference, train_loss = losses(straight), manifest(straight)["metrics"]["train_loss"]
    completed_early = recovered = identical = loss_kept = 0
    moments = []
    for i in range(kills):
        run = work.root / f"killed-{i}"
        at = rng.uniform(0.1, 1.0) * duration
        moments.append(f"{at:.1f}")
        proc = work.popen(*args, "-o", str(run))
        deadline = time.monotonic() + at
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        status_before = manifest(run).get("status")
        proc.kill()
        proc.wait()
        if status_before == "completed" and proc.returncode == -signal.SIGKILL:
            # the manifest said completed: the run's artifact and manifest must be whole
            completed_early += not (run / "artifact").is_dir()
        if manifest(run).get("status") == "completed":
            result = subprocess.CompletedProcess([], 0, "", "")
        elif (run / "forge.json").exists():
            result = work.run("run", "--resume", str(run))
        else:  # killed before the run directory was made: start again
            shutil.rmtree(run, ignore_errors=True)
            result = work.run(*args, "-o", str(run))
        recovered += result.returncode == 0 and manifest(run).get("status") == "completed"
        identical += same(losses(run), reference)
        loss_kept += abs(manifest(run).get("metrics", {}).get("train_loss", 0.0) - train_loss) <= 1e-5 * train_loss
    if not kills:
        return straight
    report.check("kill", f"{kills} runs SIGKILLed at {', '.join(moments)} s (an uninterrupted run: {duration:.0f} s) "
                         "then resumed complete", recovered == kills, f"{recovered}/{kills}")
    report.check("kill", "per-step losses identical to the uninterrupted run", identical == kills,
                 f"{identical}/{kills}")
    report.check("kill", "train_loss equals the uninterrupted run's", loss_kept == kills, f"{loss_kept}/{kills}")
    report.check("kill", "no manifest said completed without its artifact", completed_early == 0)
    return straight


# -- concurrent first runs on ./mlflow.db ----------------------------------------------------------------------------
def probe_mlflow(work: Work, report: Report, concurrent: int) -> None:
    print(f"mlflow: {concurrent} first runs at once in one folder (embedded ./mlflow.db)", flush=True)
    folder = work.root / "shared-folder"
    folder.mkdir()
    procs = [work.popen("run", "--recipe", "descent", "--set", "steps=2", "-o", f"r{i}", cwd=folder)
             for i in range(concurrent)]
    codes = [p.wait(timeout=600) for p in procs]
    later = work.run("run", "--recipe", "descent", "--set", "steps=2", "-o", "later", cwd=folder)
    report.check("mlflow", f"{concurrent} concurrent first runs exit 0", codes.count(0) == concurrent, f"exits {codes}")
    report.check("mlflow", "a later run in the same folder works", later.returncode == 0,
                 later.stderr.strip().splitlines()[-1] if later.returncode else "")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    finished = 0
    for name in [f"r{i}" for i in range(concurrent)] + ["later"]:
        run_id = (manifest(folder / name).get("mlflow") or {}).get("run_id")
        with contextlib.suppress(MlflowException):  # a run missing from the store is what this probe reports
            finished += bool(run_id) and client.get_run(run_id).info.status == "FINISHED"
    report.check("mlflow", "every run is FINISHED in the store", finished == concurrent + 1,
                 f"{finished}/{concurrent + 1}")


# -- two --resume of one run at once ---------------------------------------------------------------------------------
def probe_resume(work: Work, report: Report) -> None:
    print("resume: two `forge run --resume` of one run at once", flush=True)
    args = ["run", "--recipe", "descent", "--set", "steps=60", "--set", "step_seconds=0.1", "--no-tracking"]
    straight = work.root / "descent-straight"
    work.run(*args, "-o", str(straight))
    run = work.root / "descent-killed"
    proc = work.popen(*args, "-o", str(run))
    while proc.poll() is None and len(losses(run) if (run / "metrics.jsonl").exists() else {}) < 5:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    first, second = work.popen("run", "--resume", str(run)), work.popen("run", "--resume", str(run))
    outcomes = [(first.wait(timeout=300), first.stderr.read()), (second.wait(timeout=300), second.stderr.read())]
    codes = sorted(code for code, _ in outcomes)
    refused = [err for code, err in outcomes if code == 2]
    report.check("resume", "one resume trains, the other is refused in one line", codes == [0, 2] and len(refused) == 1
                 and "in use by" in refused[0] and len(refused[0].strip().splitlines()) == 1,
                 f"exits {codes}" + (f"; {refused[0].strip()}" if refused else ""))
    report.check("resume", "the run completes with the uninterrupted run's losses",
                 manifest(run).get("status") == "completed" and same(losses(run), losses(straight)))


# -- malicious and valid requests at 64 clients ----------------------------------------------------------------------
def half_open(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    return sock


def probe_serve(work: Work, report: Report, run: Path, clients: int, requests: int) -> None:
    print(f"serve: {requests} requests from {clients} clients, one in four malicious", flush=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = work.popen("serve", str(run), "--port", str(port), "--grace-s", "2", "--read-timeout-s", "2")
    deadline = time.monotonic() + 300
    ready_codes = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"forge serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            code = httpx.get(f"{url}/ready", timeout=2).status_code
            ready_codes.add(code)
            if code == 200:
                break
        except httpx.HTTPError:
            ready_codes.add("refused")
        time.sleep(0.05)
    print(f"  /ready answered {sorted(map(str, ready_codes))} while the server started", flush=True)

    def chat(content: str, **extra: Any) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": content}], **extra}

    questions = [f"what is the capital of {c}?" for c in ("france", "spain", "italy", "peru")]
    alone = {}
    for q in questions:
        for n in (3, 7):
            r = httpx.post(f"{url}/v1/chat/completions", json=chat(q, max_tokens=n, temperature=0), timeout=60)
            alone[(q, n)] = r.json()["choices"][0]["message"]["content"]
    bad: list[tuple[str, Any]] = [
        ("empty prompt, streamed", {"prompt": "", "stream": True}),
        ("seed 2**70", chat("hi", seed=2**70)),
        ("50 stop strings", chat("hi", stop=["x"] * 50)),
        ("lone surrogate", chat("\ud800")),
        ("n=3", chat("hi", n=3)),
        ("over-long prompt", chat("word " * 5000)),
        ("messages not a list", {"messages": "x"}),
        ("broken JSON", b'{"messages": [}'),
        ("2 MB body", b'{"messages": [{"role": "user", "content": "' + b"a" * 2_000_000 + b'"}]}'),
    ]

    async def main() -> list[tuple[str, Any, int, str]]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
            semaphore = asyncio.Semaphore(clients)

            async def one(i: int) -> tuple[str, Any, int, str]:
                async with semaphore:
                    if i % 4 == 3:
                        label, body = bad[(i // 4) % len(bad)]
                        path = "/v1/completions" if isinstance(body, dict) and "prompt" in body \
                            else "/v1/chat/completions"
                        content = body if isinstance(body, bytes) else json.dumps(body).encode()
                        r = await client.post(f"{url}{path}", content=content,
                                              headers={"Content-Type": "application/json"})
                        if r.status_code == 200 and label.endswith("streamed"):  # a stream must end, with an error
                            events = [x for x in r.text.splitlines() if x.startswith("data: ")]
                            return "bad", label, 400 if events and events[-1] == "data: [DONE]" else 599, r.text
                        return "bad", label, r.status_code, r.text[:200]
                    if i % 16 == 5:  # a client that drops its stream after the first event
                        body = chat(questions[0], max_tokens=200, temperature=1.0, stream=True)
                        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                            async for _ in r.aiter_lines():
                                break
                        return "dropped", None, r.status_code, ""
                    q, n = questions[i % 4], (3, 7)[i % 2]
                    stream = i % 8 == 1
                    r = await client.post(f"{url}/v1/chat/completions",
                                          json=chat(q, max_tokens=n, temperature=0, stream=stream))
                    if r.status_code != 200:
                        return "valid", (q, n), r.status_code, r.text[:200]
                    if stream:
                        events = [x.removeprefix("data: ") for x in r.text.splitlines() if x.startswith("data: ")]
                        text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
                    else:
                        text = r.json()["choices"][0]["message"]["content"]
                    return "valid", (q, n), 200, text

            return await asyncio.gather(*(one(i) for i in range(requests)))

    begun = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - begun
    valid = [r for r in results if r[0] == "valid"]
    answered = sum(1 for _, key, code, text in valid if code == 200 and text == alone[key])
    bad_results = [r for r in results if r[0] == "bad"]
    refused = sum(1 for _, _, code, _ in bad_results if 400 <= code < 500)
    wrong = sorted({f"{label}: {code}" for _, label, code, _ in bad_results if not 400 <= code < 500})
    report.check("serve", f"valid requests answered 200, each with what it gets alone ({elapsed:.1f} s for "
                          f"{requests})", answered == len(valid), f"{answered}/{len(valid)}")
    report.check("serve", "malicious requests answered 4xx (streams end with an error event)",
                 refused == len(bad_results), f"{refused}/{len(bad_results)}" + (f"; {wrong}" if wrong else ""))
    sockets = [half_open(port) for _ in range(8)]
    time.sleep(3)
    closed = 0
    for sock in sockets:
        sock.settimeout(2)
        with contextlib.suppress(OSError):  # still open after 2 s more: not cut
            closed += sock.recv(100) == b""
        sock.close()
    report.check("serve", "half-open connections cut after --read-timeout-s", closed == len(sockets),
                 f"{closed}/{len(sockets)}")
    health = httpx.get(f"{url}/health", timeout=5).status_code
    after = httpx.post(f"{url}/v1/chat/completions", json=chat(questions[1], max_tokens=3, temperature=0), timeout=60)
    report.check("serve", "/health 200 and a valid request answered after all that",
                 health == 200 and after.status_code == 200 and after.json()["choices"][0]["message"]["content"]
                 == alone[(questions[1], 3)], f"/health {health}, request {after.status_code}")
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                      json=chat("tell me a story", max_tokens=2000, temperature=1.0, stream=True)) as r:
        next(r.iter_lines())
        begun = time.monotonic()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    stopped = time.monotonic() - begun
    report.check("serve", "SIGTERM during a stream stops the server within its grace period (2 s) + 5 s",
                 stopped < 7, f"{stopped:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["kill", "mlflow", "resume", "serve"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["kill", "mlflow", "resume", "serve"])
    report = Report()
    begun = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Work(Path(tmp))
        from tiny_models import make_tiny_causal_lm

        model = make_tiny_causal_lm(work.root / "tiny-lm")
        data = work.root / "chat.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
        if "kill" in only or "serve" in only:
            straight = probe_kill(work, report, data, model, args.kills if "kill" in only else 0,
                                  random.Random(args.seed))
        if "mlflow" in only:
            probe_mlflow(work, report, args.concurrent)
        if "resume" in only:
            probe_resume(work, report)
        if "serve" in only:
            probe_serve(work, report, straight, args.clients, args.requests)
    print(f"\n{os.cpu_count()} CPUs, {time.monotonic() - begun:.0f} s in all\n")
    print(report.table())
    sys.exit(0 if all(held for _, _, held, _ in report.rows) else 1)


if __name__ == "__main__":
    main()
