"""``forge serve`` on an ``onnx-causal-lm`` export: the OpenAI-compatible API of forge-hf's LM server
(:mod:`forge_hf.serve_lm`: routes, validation, error shapes, SSE streaming), generating with ONNX Runtime through
:class:`forge_onnx.lm_runtime.OnnxCausalLM`.

The HTTP layer and the tokenizer (the transformers tokenizer saved beside the model, so chat templates render exactly
as in training) come from forge-hf: ``pip install 'forge-onnx[hf]'``. The session uses ``FORGE_ORT_THREADS`` threads
(default: one per core) and no spinning threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from forge.artifacts import Artifact
from forge.errors import ForgeError
from forge.serving.settings import ServeSettings


def _serve_lm() -> Any:
    try:
        import forge_hf.serve_lm as serve_lm
    except ImportError:
        raise ForgeError("serving an ONNX causal LM needs forge-hf (its OpenAI-compatible API and tokenizer): "
                         "pip install 'forge-onnx[hf]'") from None
    return serve_lm


class OnnxBackend:
    """Backend for :func:`forge_hf.serve_lm.create_openai_app`: transformers tokenizer, ONNX Runtime decoder."""

    def __init__(self, directory: Path, threads: int = 0) -> None:
        from transformers import AutoTokenizer

        from forge_onnx.lm_runtime import OnnxCausalLM

        self.lm = OnnxCausalLM(directory, threads)
        self.codec = _serve_lm().HFTokenizerCodec(AutoTokenizer.from_pretrained(directory))
        eos = self.codec.tokenizer.eos_token_id
        self.stop_ids = set(self.lm.stop_ids) or ({int(eos)} if eos is not None else set())

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return list(self.codec.encode_chat(messages))

    def encode_text(self, text: str) -> list[int]:
        return list(self.codec.encode_text(text))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.codec.decode(ids))

    def stream(self, prompt_ids: list[int], options: Any) -> Iterator[int]:
        return self.lm.stream(prompt_ids, options.max_new_tokens, temperature=options.temperature,
                              top_p=options.top_p, seed=options.seed, stop_ids=sorted(self.stop_ids))


def create_onnx_lm_app(artifact: Artifact, settings: ServeSettings) -> Any:
    from forge_onnx.serve import threads

    serve_lm = _serve_lm()
    if not (artifact.path / "model.onnx").is_file():
        raise ForgeError(f"{artifact.path}: no model.onnx in this onnx-causal-lm export")
    return serve_lm.create_openai_app(artifact, settings, lambda: OnnxBackend(artifact.path, threads()))
