"""The service export (`forge export --format service`): cold start and the size of what its image holds, against
`forge serve` of the same ONNX classifier.

    python bench/service_export.py [--repeats 3]

Builds the tiny-BERT-sized classifier of tests/tiny_models.py and the packaged all-MiniLM-L6-v2 as classifiers
(heads untrained), exports each to int8 ONNX and then to a service folder, installs one fresh venv from the
service's requirements.txt, and measures, alternating sides: process start → first 200 on /health, for
`python app.py` in that venv and for `forge serve` (the shared dev venv). Sizes: the service venv (what a Docker
image adds to python:3.X-slim), the model folder, and the dev venv's site-packages for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import forge

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cold_start(command: list[str], cwd: Path, env: dict[str, str], port: int) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{command} exited {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from forge_hf.provider import resolve_model
    from tiny_models import make_tiny_bert_classifier_base, make_tiny_classifier_artifact

    work = Path(tempfile.mkdtemp(prefix="forge-bench-service-"))
    make_tiny_classifier_artifact(work / "tiny", make_tiny_bert_classifier_base(work / "tiny-bert"))
    make_tiny_classifier_artifact(work / "minilm", Path(resolve_model("minilm-l6")[0]))
    models = ["tiny", "minilm"]
    for name in models:
        forge("export", name, "--format", "onnx", "--quantize", "int8", "-o", f"{name}-int8", cwd=work)
        forge("export", f"{name}-int8", "--format", "service", "-o", f"{name}-svc", cwd=work)
    venv = work / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                    str(work / "tiny-svc" / "requirements.txt")], check=True, capture_output=True)
    install_s = time.perf_counter() - started
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    print(f"service venv: {size_mib(venv):.0f} MiB installed in {install_s:.0f} s "
          f"({json.loads((work / 'tiny-svc' / 'forge.json').read_text())['service']['requirements']})")
    import site

    dev = Path(site.getsitepackages()[0])
    print(f"dev venv site-packages (forge serve's environment): {size_mib(dev):.0f} MiB")
    for name in models:
        svc = work / f"{name}-svc"
        service_times, serve_times = [], []
        for _ in range(args.repeats):
            port = free_port()
            service_times.append(cold_start([str(venv / "bin" / "python"), "app.py"], svc,
                                            {**base_env, "PORT": str(port), "HOST": "127.0.0.1",
                                             "LOG_LEVEL": "warning"}, port))
            port = free_port()
            serve_times.append(cold_start([sys.executable, "-m", "forge", "serve", f"{name}-int8", "--port",
                                           str(port)], work, base_env, port))
        a, b = statistics.median(service_times), statistics.median(serve_times)
        print(f"{name}: model folder {size_mib(svc / 'model'):.1f} MiB; cold start to first /health 200, median of "
              f"{args.repeats}: service {a:.2f} s, forge serve {b:.2f} s (ratio {b / a:.2f}x)")
    print(f"(work files in {work})")


if __name__ == "__main__":
    main()
