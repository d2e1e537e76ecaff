"""ONNX Runtime for ``onnx-sentence-embedder`` artifacts: ``POST /embed`` (the torch server's routes) and the
in-process predictor. Tokenisation uses the artifact's ``tokenizer.json`` through the ``tokenizers`` library; the
graph itself pools and normalises, so no torch and no transformers are needed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from forge.artifacts import Artifact
from forge.errors import ForgeError
from forge.serving.app import create_base_app
from forge.serving.settings import ServeSettings

from forge_onnx.export import session


def onnx_embedder(artifact: Artifact, threads: int) -> Callable[[list[str]], np.ndarray]:
    """A texts → embeddings function (tokenizers + ONNX Runtime)."""
    from tokenizers import Tokenizer

    ort_session = session(artifact.path / "model.onnx", threads)
    tokenizer = Tokenizer.from_file(str(artifact.path / "tokenizer.json"))
    tokenizer.enable_truncation(int(artifact.manifest["max_length"]))
    config = json.loads((artifact.path / "tokenizer_config.json").read_text())
    pad_token = config.get("pad_token") or "[PAD]"
    pad_token = pad_token["content"] if isinstance(pad_token, dict) else pad_token
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token) or 0, pad_token=pad_token)
    names = list(artifact.manifest["input_names"])

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        return np.asarray(ort_session.run(None, {n: feeds[n] for n in names})[0], dtype=np.float32)

    return embed


def create_embedder_app(artifact: Artifact, settings: ServeSettings, threads: int) -> Any:
    try:
        from forge_hf.serve_embedder import add_embed_routes
    except ImportError:
        raise ForgeError("serving a sentence embedder needs forge-hf: pip install 'forge-onnx[hf]'") from None
    dimension = int(artifact.manifest["dimension"])
    app = create_base_app(f"forge onnx-sentence-embedder ({dimension} dimensions)", settings)
    add_embed_routes(app, onnx_embedder(artifact, threads), settings, dimension,
                     bool(artifact.manifest.get("normalize", False)))
    return app


def create_predictor(artifact: Artifact, options: dict[str, Any], threads: int) -> Any:
    try:
        from forge_hf.predict import int_option
        from forge_hf.serve_embedder import EmbedderPredictor
    except ImportError:
        raise ForgeError("a sentence embedder needs forge-hf: pip install 'forge-onnx[hf]'") from None
    return EmbedderPredictor(onnx_embedder(artifact, threads), int(artifact.manifest["dimension"]),
                             int_option(options, "batch_size", 32))
