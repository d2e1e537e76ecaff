"""``forge export --format service``: the folder runs from its own requirements.txt in a fresh virtualenv (no forge
in it), answers like ``forge serve``, and its Dockerfile is what operations expect (checked statically: no Docker
daemon here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import forge
import httpx
import pytest
from support import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_bert) -> tuple[Path, Path]:
    """(the int8 ONNX classifier, its service folder), made through the CLI."""
    from tiny_models import make_tiny_classifier_artifact

    work = tmp_path_factory.mktemp("service")
    make_tiny_classifier_artifact(work / "clf", tiny_bert)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    for args in (["export", "clf", "--format", "onnx", "--quantize", "int8", "-o", "clf-int8"],
                 ["export", "clf-int8", "--format", "service", "-o", "svc"]):
        done = subprocess.run([sys.executable, "-m", "forge", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return work / "clf-int8", work / "svc"


def test_service_folder_is_complete_and_the_dockerfile_fits_operations(service):
    _, svc = service
    assert sorted(p.name for p in svc.iterdir()) == [".dockerignore", "Dockerfile", "README.md", "app.py",
                                                     "forge.json", "model", "requirements.txt", "static"]
    assert sorted(p.name for p in (svc / "model").iterdir()) == ["model.onnx", "service.json", "tokenizer.json"]
    requirements = [line for line in (svc / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9_-]+==[0-9][^\s]*", line) for line in requirements), requirements
    assert {r.split("==")[0] for r in requirements} == {"fastapi", "uvicorn", "onnxruntime", "tokenizers", "numpy",
                                                        "pydantic"}
    assert not any(line.startswith(("forge", "torch", "transformers")) for line in requirements)
    docker = (svc / "Dockerfile").read_text()
    lines = [line.strip() for line in docker.splitlines() if line.strip() and not line.startswith("#")]
    assert re.fullmatch(r"FROM python:3\.\d+-slim", lines[0])
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("RUN useradd") and users[-1] in line for line in lines)
    assert "HEALTHCHECK" in docker and "/health" in docker.split("HEALTHCHECK", 1)[1]
    assert "PORT=8000" in docker and "HOST=0.0.0.0" in docker and "EXPOSE 8000" in docker
    assert lines[-1] == 'CMD ["python", "app.py"]'
    assert docker.index("COPY requirements.txt") < docker.index("RUN pip install") < docker.index("COPY --chown")
    assert {".venv/", "__pycache__/", ".git/"} <= set((svc / ".dockerignore").read_text().split())
    readme = (svc / "README.md").read_text()
    assert "curl -s localhost:8000/predict" in readme and "docker build" in readme
    assert "http" not in (svc / "static" / "index.html").read_text().replace("http://www.w3.org/2000/svg", "")


@pytest.mark.slow
def test_service_runs_from_its_own_requirements_in_a_fresh_venv(service, tmp_path):
    onnx_artifact, svc = service
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(svc / "requirements.txt")],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    no_forge = subprocess.run([str(python), "-c", "import forge"], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"]})
    assert no_forge.returncode != 0  # the service stands alone
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "API_KEY": "s3cret", "HOST": "127.0.0.1"}
    started = time.perf_counter()
    proc = subprocess.Popen([str(python), "app.py"], cwd=svc, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.perf_counter() - started < 60, "no /health within 60 s"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        texts = ["good movie", "awful film", "i love it"]
        key = {"Authorization": "Bearer s3cret"}
        # int8 activations are quantized per call (scale from the whole batch): compare like with like
        with forge.load_predictor(forge.Artifact.load(onnx_artifact)) as predictor:
            alone = predictor.predict([{"text": texts[0]}])[0]
            together = predictor.predict([{"text": t} for t in texts])
        one = httpx.post(f"{url}/predict", json={"text": texts[0]}, headers=key).json()
        assert one["label"] == alone["label"]
        assert one["scores"] == pytest.approx(alone["scores"], abs=1e-6)
        batch = httpx.post(f"{url}/predict/batch", json={"texts": texts}, headers={"X-API-Key": "s3cret"}).json()
        for got, want in zip(batch["results"], together, strict=True):
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-6)
        refused = httpx.post(f"{url}/predict", json={"text": "hi"})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        empty = httpx.post(f"{url}/predict", json={"text": " "}, headers=key)
        assert empty.status_code == 422 and empty.json()["error"]["message"] == "text: must not be empty"
        lone = httpx.post(f"{url}/predict/batch", content='{"texts": ["good", "a\\ud800b"]}',
                          headers={**key, "Content-Type": "application/json"})
        assert lone.status_code == 422 and lone.json()["error"]["param"] == "texts.1"
        wrong = httpx.post(f"{url}/predict", json={"text": 3}, headers=key)
        assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "text"
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and '"page": "classify"' in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_service_export_bad_input(forge_cli, service, tmp_path):
    onnx_artifact, _ = service
    torch_clf = onnx_artifact.parent / "clf"
    wrong = forge_cli("export", torch_clf, "--format", "service", "-o", tmp_path / "a")
    assert wrong.returncode == 2
    assert "does not take sequence-classifier artifacts" in wrong.stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / "forge.json").write_text(json.dumps({"type": "run", "status": "running"}))
    unfinished = forge_cli("export", run, "--format", "service", "-o", tmp_path / "b")
    assert unfinished.returncode == 2 and "run is running, not completed" in unfinished.stderr
    option = forge_cli("export", onnx_artifact, "--format", "service", "--set", "port=1", "-o", tmp_path / "c")
    assert option.returncode == 2 and "unknown option 'port'" in option.stderr
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")
