"""ONNX Runtime server: the same API as the torch servers for the kind (``/predict``, ``/forecast``).

Tokenisation uses the artifact's ``tokenizer.json`` through the ``tokenizers`` library (no torch, no transformers).
Sessions use an explicit thread count (``FORGE_ORT_THREADS``, default: all cores) and no spinning threads, so an idle
server uses no CPU.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from forge.artifacts import Artifact
from forge.errors import ForgeError
from forge.serving.app import create_base_app
from forge.serving.settings import ServeSettings

from forge_onnx.export import session


def threads() -> int:
    return int(os.environ.get("FORGE_ORT_THREADS", "0"))  # 0: onnxruntime's default, one per core


def create_onnx_app(artifact: Artifact, settings: ServeSettings) -> Any:
    if artifact.kind == "onnx-sentence-embedder":
        from forge_onnx.serve_embedder import create_embedder_app

        return create_embedder_app(artifact, settings, threads())
    ort_session = session(artifact.path / "model.onnx", threads())
    if artifact.kind == "onnx-sequence-classifier":
        return _classifier_app(artifact, ort_session, settings)
    return _forecaster_app(artifact, ort_session, settings)


def onnx_classifier(artifact: Artifact, ort_session: Any) -> tuple[list[str], Any]:
    """Labels and a texts → probabilities function for an ``onnx-sequence-classifier`` (tokenizers + ORT)."""
    from tokenizers import Tokenizer

    try:
        from forge_hf.predict import softmax
    except ImportError:
        raise ForgeError("a text classifier needs forge-hf: pip install 'forge-onnx[hf]'") from None
    tokenizer = Tokenizer.from_file(str(artifact.path / "tokenizer.json"))
    max_length = int(artifact.manifest["max_length"])
    tokenizer.enable_truncation(max_length)
    config = json.loads((artifact.path / "tokenizer_config.json").read_text())
    pad_token = config.get("pad_token") or "[PAD]"
    pad_token = pad_token["content"] if isinstance(pad_token, dict) else pad_token
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token) or 0, pad_token=pad_token)
    names = list(artifact.manifest["input_names"])

    def predict_probs(texts: list[str]) -> np.ndarray:
        encoded = tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        return softmax(ort_session.run(None, {n: feeds[n] for n in names})[0])

    return list(artifact.manifest["labels"]), predict_probs


def _classifier_app(artifact: Artifact, ort_session: Any, settings: ServeSettings) -> Any:
    try:
        from forge_hf.serve_classifier import add_classifier_routes
    except ImportError:
        raise ForgeError("serving a text classifier needs forge-hf: pip install 'forge-onnx[hf]'") from None
    labels, predict_probs = onnx_classifier(artifact, ort_session)
    app = create_base_app(f"forge onnx-sequence-classifier ({', '.join(labels)})", settings, page="classify")
    add_classifier_routes(app, labels, predict_probs, settings)
    return app


def _forecaster_app(artifact: Artifact, ort_session: Any, settings: ServeSettings) -> Any:
    try:
        from forge_timeseries.forecasters import WindowForecaster, load_history
        from forge_timeseries.serve import add_forecast_routes
        from forge_timeseries.spec import ForecasterSpec
    except ImportError:
        raise ForgeError("serving a forecaster needs forge-timeseries: pip install 'forge-onnx[timeseries]'") \
            from None
    spec = ForecasterSpec.load(artifact.path)

    def run_model(inputs: np.ndarray) -> np.ndarray:  # scaled windows → scaled forecasts; scaling is forge's
        return ort_session.run(None, {"inputs": inputs})[0]

    forecaster = WindowForecaster(artifact.kind, spec, load_history(artifact.path), run_model)
    app = create_base_app(f"forge onnx-forecaster ({spec.columns[0]})", settings, page="forecast")
    add_forecast_routes(app, forecaster, settings)
    return app


def create_predictor(artifact: Artifact, options: dict[str, Any]) -> Any:
    """``forge.load_predictor`` for ONNX classifiers (rows ``{"text"}``), embedders and forecasters (``/forecast``
    bodies)."""
    if artifact.kind == "onnx-sentence-embedder":
        from forge_onnx.serve_embedder import create_predictor as embedder_predictor

        return embedder_predictor(artifact, options, threads())
    if artifact.kind == "onnx-sequence-classifier":
        try:
            from forge_hf.predict import ClassifierPredictor, int_option
        except ImportError:
            raise ForgeError("a text classifier needs forge-hf: pip install 'forge-onnx[hf]'") from None
        labels, predict_probs = onnx_classifier(artifact, session(artifact.path / "model.onnx", threads()))
        return ClassifierPredictor(labels, predict_probs, int_option(options, "batch_size", 32))
    try:
        from forge_timeseries.serve import create_predictor as forecast_predictor
    except ImportError:
        raise ForgeError("a forecaster needs forge-timeseries: pip install 'forge-onnx[timeseries]'") from None
    return forecast_predictor(artifact, options)
