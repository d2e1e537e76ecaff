"""The OpenAI server's format-independent layer (forge_hf.serve_lm): incremental detokenisation, stop strings held
back until they are decided, finish reasons and token counts, for any backend; the chat template as stored in a
GGUF rendered as transformers renders it; GGUF serving (llama.cpp when installed, else one line, exit 2)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from forge_hf.serve_lm import GenerationOptions, TextStream, render_chat_template
from support import Server

EOS = 0


class ByteBackend:
    """Token = one UTF-8 byte (+1), 0 = EOS: multi-byte characters arrive in pieces. Streams a fixed answer."""

    stop_ids = {EOS}

    def __init__(self, answer: str, eos: bool = True) -> None:
        self.answer = [b + 1 for b in answer.encode("utf-8")] + ([EOS] if eos else [])
        self.closed = False
        self.produced = 0

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i - 1 for i in ids if i != EOS).decode("utf-8", errors="replace")

    def encode_text(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode("utf-8")]

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode_text(messages[-1]["content"])

    def stream(self, prompt_ids: list[int], options: GenerationOptions) -> Iterator[int]:
        try:
            for token in self.answer[: options.max_new_tokens]:
                self.produced += 1
                yield token
        finally:
            self.closed = True


def run(backend: ByteBackend, max_new: int = 100, stop: str | list[str] | None = None) -> tuple[list[str], TextStream]:
    text_stream = TextStream(backend, [1], GenerationOptions(max_new_tokens=max_new), stop)
    return list(text_stream), text_stream


def test_pieces_are_whole_characters_and_eos_ends_with_stop():
    pieces, result = run(ByteBackend("héllo wörld ✓"))
    assert "".join(pieces) == "héllo wörld ✓" and not any("\ufffd" in p for p in pieces)
    assert result.finish_reason == "stop" and result.completion_tokens == len("héllo wörld ✓".encode()) + 1


def test_token_budget_ends_with_length():
    pieces, result = run(ByteBackend("abcdef"), max_new=4)
    assert "".join(pieces) == "abcd" and result.finish_reason == "length" and result.completion_tokens == 4
    pieces, result = run(ByteBackend("abc", eos=False), max_new=10)  # ended by the backend: stop
    assert "".join(pieces) == "abc" and result.finish_reason == "stop"


def test_stop_strings_cut_the_text_and_are_never_streamed_in_part():
    backend = ByteBackend("one\n\nUser: two")
    pieces, result = run(backend, stop=["\n\nUser:", "zzz"])
    assert "".join(pieces) == "one" and result.finish_reason == "stop"
    assert backend.closed and backend.produced < len("one\n\nUser: two")  # generation cancelled at the stop
    # a prefix of a stop string that turns out not to be one is released
    pieces, _ = run(ByteBackend("one\n\nAnswer"), stop="\n\nUser:")
    assert "".join(pieces) == "one\n\nAnswer" and all(not p.endswith("\n") for p in pieces[:-1])
    pieces, _ = run(ByteBackend("a\n"), stop="\n\n")  # held back at the end, released when generation ends
    assert "".join(pieces) == "a\n"
    pieces, result = run(ByteBackend("stop at once"), stop="stop")
    assert pieces == [] and result.finish_reason == "stop"


def test_gguf_chat_template_renders_like_transformers(tiny_lm):
    """What the llama.cpp backend sends for a chat equals what the torch/ONNX backends send."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "capital of peru?"},
                {"role": "assistant", "content": "lima."}, {"role": "user", "content": "and spain?"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    rendered = render_chat_template(tokenizer.chat_template, messages, tokenizer.bos_token or "",
                                    tokenizer.eos_token or "")
    assert rendered == expected


@pytest.fixture(scope="module")
def gguf_export(tiny_sft_run, tmp_path_factory, mlflow_uri):
    import os
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("gguf-serve") / "gguf"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    result = subprocess.run([sys.executable, "-m", "forge", "export", str(tiny_sft_run), "--format", "gguf",
                             "--quantize", "f16", "-o", str(out)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is not None, reason="llama-cpp-python is installed")
def test_gguf_serve_without_llama_cpp_is_one_line(forge_cli, gguf_export):
    result = forge_cli("serve", gguf_export)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "make llama-cpp" in lines[0] and "pip install llama-cpp-python" in lines[0]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (make llama-cpp builds it)")
def test_gguf_served_through_llama_cpp(forge_cli, gguf_export, tiny_sft_run):
    """forge serve on a GGUF: the openai client's streamed and plain answers agree, greedy ones repeat, and the
    greedy tokens are llama.cpp's own for the transformers-rendered chat prompt."""
    from forge_hf.llama_cpp_runtime import LlamaCppCausalLM
    from openai import OpenAI
    from transformers import AutoTokenizer

    question = [{"role": "user", "content": "what is the capital of spain?"}]
    with Server(forge_cli, gguf_export) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        model_id = client.models.list().data[0].id
        chat = client.chat.completions.create(model=model_id, messages=question, max_tokens=12, temperature=0)
        stream = client.chat.completions.create(model=model_id, messages=question, max_tokens=12, temperature=0,
                                                stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream)
        completion = client.completions.create(model=model_id, prompt="the capital of", max_tokens=4,
                                               temperature=0)
    assert streamed == chat.choices[0].message.content and completion.usage.completion_tokens <= 4
    tokenizer = AutoTokenizer.from_pretrained(tiny_sft_run / "artifact")
    text = tokenizer.apply_chat_template(question, add_generation_prompt=True, tokenize=False)
    m = json.loads((Path(gguf_export) / "forge.json").read_text())
    runtime = LlamaCppCausalLM(Path(gguf_export) / m["gguf_file"], n_ctx=256)
    try:
        ids = runtime.generate(runtime.tokenize(text), max_new_tokens=12)
        assert chat.usage.completion_tokens == len(ids)
        assert chat.choices[0].message.content == runtime.detokenize([i for i in ids if not runtime.is_stop(i)])
    finally:
        runtime.close()
