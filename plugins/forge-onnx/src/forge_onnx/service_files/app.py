"""A text classifier as an HTTP service: ONNX Runtime and the model's own tokenizer, nothing of forge.

Written by ``forge export ARTIFACT --format service``; its requirements are in requirements.txt.

    python app.py                                   # 0.0.0.0:$PORT (default 8000)
    curl localhost:8000/predict -H 'content-type: application/json' -d '{"text": "a lovely film"}'

Environment: ``PORT``, ``HOST`` (default 0.0.0.0), ``API_KEY`` (then every route but /health, /ready and the page
needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``), ``MAX_BODY_BYTES`` (default 1000000), ``ORT_THREADS``
(default: one per core), ``MAX_BATCH`` (texts per model call in /predict/batch, default 32).
Routes: ``GET /health``, ``GET /ready``, ``POST /predict`` {"text"}, ``POST /predict/batch`` {"texts": [...]},
``GET /`` (a playground page). Errors: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape).
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, StrictStr
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE / "model" / "service.json").read_text(encoding="utf-8"))
LABELS: list[str] = list(SPEC["labels"])
MAX_CHARS = 20_000
OPEN_PATHS = {"/", "/health", "/ready"}


def load_model() -> tuple[Tokenizer, ort.InferenceSession]:
    tokenizer = Tokenizer.from_file(str(HERE / "model" / "tokenizer.json"))
    tokenizer.enable_truncation(int(SPEC["max_length"]))
    tokenizer.enable_padding(pad_id=int(SPEC["pad_id"]), pad_token=SPEC["pad_token"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "0"))
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # an idle service uses no CPU
    session = ort.InferenceSession(str(HERE / "model" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return tokenizer, session


TOKENIZER, SESSION = load_model()
MAX_BATCH = max(1, int(os.environ.get("MAX_BATCH", "32")))


def probabilities(texts: list[str]) -> np.ndarray:
    out = []
    for start in range(0, len(texts), MAX_BATCH):
        encoded = TOKENIZER.encode_batch(texts[start:start + MAX_BATCH])
        feeds = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                 "token_type_ids": [e.type_ids for e in encoded]}
        logits = SESSION.run(None, {n: np.array(feeds[n], dtype=np.int64) for n in SPEC["input_names"]})[0]
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        out.append(shifted / shifted.sum(axis=-1, keepdims=True))
    return np.concatenate(out)


def answer(probs: np.ndarray) -> dict[str, Any]:
    best = int(np.argmax(probs))
    return {"label": LABELS[best], "confidence": float(probs[best]),
            "scores": {name: float(p) for name, p in zip(LABELS, probs, strict=True)}}


def error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kinds = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large",
             422: "invalid_request_error"}
    return JSONResponse({"error": {"message": message, "type": kinds.get(status, "server_error"), "param": param,
                                   "code": status}}, status_code=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


Text = Annotated[StrictStr, Field(description="the text to classify")]


class PredictRequest(BaseModel):
    text: Text


class BatchPredictRequest(BaseModel):
    texts: list[Text] = Field(min_length=1, max_length=256)


app = FastAPI(title=SPEC.get("title", "text classifier"))
API_KEY = os.environ.get("API_KEY") or None
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", "1000000"))


@app.middleware("http")
async def guard(request: Request, call_next: Any) -> Any:
    if API_KEY and request.url.path not in OPEN_PATHS:
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.strip().encode(), API_KEY.encode()):
            return error(401, "missing or wrong API key")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return error(413, f"request body over {MAX_BODY_BYTES} bytes")
    return await call_next(request)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return error(422, f"{param}: {first.get('msg')}" if param else str(first.get("msg")), param)


def check(text: str, field: str) -> JSONResponse | None:
    if not text.strip():
        return error(422, f"{field}: must not be empty", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as problem:  # JSON may carry a lone surrogate ("\ud800"): no tokenizer encodes it
        return error(422, f"{field}: contains a character that cannot be encoded as UTF-8 (a lone surrogate) at "
                          f"position {problem.start}", field)
    if len(text) > MAX_CHARS:
        return error(422, f"{field}: {len(text)} characters is longer than the limit of {MAX_CHARS}", field)
    return None


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}  # the model is loaded at import, before the server accepts connections


@app.post("/predict")
def predict(request: PredictRequest) -> Any:
    return check(request.text, "text") or answer(probabilities([request.text])[0])


@app.post("/predict/batch")
def predict_batch(request: BatchPredictRequest) -> Any:
    for i, text in enumerate(request.texts):
        if (problem := check(text, f"texts.{i}")) is not None:
            return problem
    return {"results": [answer(p) for p in probabilities(list(request.texts))]}


@app.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse((HERE / "static" / "index.html").read_text(encoding="utf-8"))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "8000")),
                log_level=os.environ.get("LOG_LEVEL", "info"))
