"""``forge export ARTIFACT --format service``: a folder that serves an ONNX text classifier without forge.

    forge export runs/classify-1 --format onnx --quantize int8 -o clf-int8
    forge export clf-int8 --format service -o clf-service
    cd clf-service && python -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python app.py
    docker build -t clf-service clf-service && docker run -p 8000:8000 clf-service

The folder: ``model/`` (model.onnx, tokenizer.json, service.json), ``app.py`` (FastAPI + ONNX Runtime + tokenizers:
the same ``/predict`` API, error shape and API-key check as ``forge serve``, and its playground page in
``static/index.html``), ``requirements.txt`` pinned to the versions this export was tested with, a ``Dockerfile``
(slim Python, non-root user, ``HEALTHCHECK`` on ``/health``, port from ``PORT``), ``.dockerignore`` and a README.

A standalone app, not forge-core plus a plugin: the ONNX export was made so a model runs without torch, and forge's
plugins bring torch and transformers in with them; the service's image holds five libraries instead.
"""

from __future__ import annotations

import json
import shutil
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from forge.artifacts import Artifact, ArtifactResult
from forge.errors import ForgeError

# what app.py imports: pinned to the versions installed where the export is made (and tested)
REQUIREMENTS = ("fastapi", "uvicorn", "onnxruntime", "tokenizers", "numpy", "pydantic")
PYTHON_IMAGE = "python:{major}.{minor}-slim"

DOCKERFILE = """\
# A text classifier service (written by forge export --format service). Build: docker build -t NAME .
FROM {image}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORT=8000 HOST=0.0.0.0
RUN useradd --create-home --uid 10001 service
WORKDIR /srv
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=service:service . .
USER service
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \\
  CMD {health}
CMD ["python", "app.py"]
"""

# python, not curl: the slim image has no curl
HEALTH_PROBE = ("python -c \"import os, urllib.request as u; "
                "u.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)\"")

DOCKERIGNORE = """\
.venv/
venv/
__pycache__/
*.pyc
.git/
.dockerignore
Dockerfile
"""

README = """\
# {title}

A text classifier service, written by `forge export --format service` from `{source}`
({kind}, labels: {labels}). It needs no forge: `app.py` runs the ONNX model with ONNX Runtime and the model's own
tokenizer, with the libraries pinned in `requirements.txt`.

## Run

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    PORT=8000 .venv/bin/python app.py

or with Docker (non-root, health-checked on `/health`):

    docker build -t {name} . && docker run --rm -p 8000:8000 -e API_KEY=s3cret {name}

Environment: `PORT` (8000), `HOST` (0.0.0.0), `API_KEY` (unset: no key needed), `MAX_BODY_BYTES` (1000000),
`ORT_THREADS` (0: one per core), `MAX_BATCH` (32 texts per model call), `LOG_LEVEL` (info).

## Call it

    curl -s localhost:8000/health
    curl -s localhost:8000/predict -H 'content-type: application/json' -H 'Authorization: Bearer s3cret' \\
         -d '{{"text": "a lovely film"}}'
    # → {{"label": "...", "confidence": 0.97, "scores": {{{scores}}}}}
    curl -s localhost:8000/predict/batch -H 'content-type: application/json' -H 'X-API-Key: s3cret' \\
         -d '{{"texts": ["a lovely film", "a dull film"]}}'

Open http://localhost:8000/ for a playground page. Errors are JSON `{{"error": {{"message", "type", "param",
"code"}}}}`: 401 wrong or missing key, 413 body too large, 422 invalid request (naming the field).
"""


def _pins() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ForgeError(f"--format service: {name} is not installed here, so it cannot be pinned") from None
    return pins


def _pad(path: Path) -> tuple[str, int]:
    from tokenizers import Tokenizer

    config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    pad = config.get("pad_token") or "[PAD]"
    pad = pad["content"] if isinstance(pad, dict) else str(pad)
    pad_id = Tokenizer.from_file(str(path / "tokenizer.json")).token_to_id(pad)
    return pad, int(pad_id or 0)


def export(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    unknown = sorted(set(options) - {"name"})
    if unknown:
        raise ForgeError(f"--format service: unknown option {unknown[0]!r} (options: name)")
    source = artifact.path
    missing = [f for f in ("model.onnx", "tokenizer.json", "tokenizer_config.json") if not (source / f).is_file()]
    if missing:
        raise ForgeError(f"{source}: an onnx-sequence-classifier without {', '.join(missing)}")
    name = str(options.get("name") or source.name).lower().replace("_", "-")
    labels = list(artifact.manifest["labels"])
    model = output_dir / "model"
    model.mkdir()
    for file in ("model.onnx", "tokenizer.json"):
        shutil.copy2(source / file, model / file)
    pad_token, pad_id = _pad(source)
    title = f"{name}: text classifier ({', '.join(labels)})"
    (model / "service.json").write_text(json.dumps({
        "title": title, "kind": artifact.kind, "labels": labels, "max_length": int(artifact.manifest["max_length"]),
        "input_names": list(artifact.manifest["input_names"]), "pad_token": pad_token, "pad_id": pad_id,
        "source": str(source.resolve()), "quantize": (artifact.manifest.get("export_options") or {}).get("quantize"),
    }, indent=2) + "\n")
    files = resources.files("forge_onnx.service_files")
    (output_dir / "app.py").write_text(files.joinpath("app.py").read_text(encoding="utf-8"), encoding="utf-8")
    from forge.serving.playground import playground_html

    (output_dir / "static").mkdir()
    (output_dir / "static" / "index.html").write_text(playground_html("classify", title), encoding="utf-8")
    pins = _pins()
    (output_dir / "requirements.txt").write_text(
        "# what app.py needs, pinned to the versions this service was exported (and tested) with\n"
        + "\n".join(pins) + "\n", encoding="utf-8")
    image = PYTHON_IMAGE.format(major=sys.version_info.major, minor=sys.version_info.minor)
    (output_dir / "Dockerfile").write_text(DOCKERFILE.format(image=image, health=HEALTH_PROBE), encoding="utf-8")
    (output_dir / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")
    scores = ", ".join(f'"{label}": ...' for label in labels)
    (output_dir / "README.md").write_text(README.format(title=title, source=source, kind=artifact.kind,
                                                        labels=", ".join(labels), name=name, scores=scores),
                                          encoding="utf-8")
    return ArtifactResult(kind="service", extra={"service": {"app": "app.py", "requirements": pins, "image": image,
                                                             "serves": artifact.kind, "labels": labels}})
