"""OpenAI-compatible server for ``causal-lm`` and ``causal-lm-adapter`` artifacts.

    forge serve runs/sft-1 --port 8000
    # then: openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(...)

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` too), ``POST /v1/completions``, plus the
serving core's ``/health``, ``/ready`` and ``/metrics``. A LoRA adapter is merged into its base in memory at start.
Generation runs one request at a time in a worker thread (a CPU model uses every core for one request anyway).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi.responses import StreamingResponse
from forge.artifacts import Artifact
from forge.serving.app import create_base_app, error_response
from forge.serving.settings import ServeSettings
from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str


class SamplingFields(BaseModel):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1, le=4096)


def load_for_inference(artifact: Artifact) -> tuple[Any, Any]:
    """Model (adapter merged in memory) and tokenizer of an LM artifact, on GPU when there is one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge_hf.provider import auto_device, auto_dtype, resolve_model

    dtype = auto_dtype()
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    if artifact.kind == "causal-lm-adapter":
        from peft import PeftModel

        base_source, _ = resolve_model(artifact.manifest["base_model"])
        base = AutoModelForCausalLM.from_pretrained(base_source, dtype=dtype, use_safetensors=True)
        model = PeftModel.from_pretrained(base, artifact.path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=dtype, use_safetensors=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(auto_device()).eval()
    return model, tokenizer


class Generator:
    """Greedy or sampled generation with stop strings and optional streaming."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.lock = threading.Lock()

    def _kwargs(self, request: SamplingFields, max_new_tokens: int) -> dict[str, Any]:
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
        return kwargs

    def encode_chat(self, messages: list[ChatMessage]) -> Any:
        payload = [m.model_dump() for m in messages]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(payload, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in payload) + "\nassistant:"
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def encode_text(self, text: str) -> Any:
        return self.tokenizer(text, return_tensors="pt")

    @staticmethod
    def _trim(text: str, request: SamplingFields) -> tuple[str, bool]:
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        cut = min((text.find(s) for s in stops if s and s in text), default=-1)
        return (text[:cut], True) if cut >= 0 else (text, False)

    def generate(self, inputs: Any, request: SamplingFields, max_new_tokens: int) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt_tokens, completion_tokens)."""
        import torch

        inputs = inputs.to(self.model.device)
        with self.lock, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = self.model.generate(**inputs, **self._kwargs(request, max_new_tokens))
        new = output[0, inputs["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = self._trim(text, request)
        ended = stopped or (len(new) < max_new_tokens) or (len(new) and int(new[-1]) == self.tokenizer.eos_token_id)
        return text, "stop" if ended else "length", int(inputs["input_ids"].shape[1]), len(new)

    def stream(self, inputs: Any, request: SamplingFields, max_new_tokens: int) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        inputs = inputs.to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> None:
            with self.lock, torch.inference_mode():
                if request.seed is not None:
                    torch.manual_seed(request.seed)
                self.model.generate(**inputs, streamer=streamer, **self._kwargs(request, max_new_tokens))

        threading.Thread(target=run, daemon=True).start()
        sent = ""
        for piece in streamer:
            candidate, stopped = self._trim(sent + piece, request)
            if candidate[len(sent):]:
                yield candidate[len(sent):]
            sent = candidate
            if stopped:
                break


def create_lm_app(artifact: Artifact, settings: ServeSettings) -> Any:
    """The FastAPI app serving ``artifact`` (called by ``forge serve``)."""
    state: dict[str, Any] = {}
    model_id = artifact.manifest.get("base_model") or artifact.path.name
    model_id = f"{artifact.path.parent.name}/{artifact.path.name}" if artifact.path.name == "artifact" else model_id

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        model, tokenizer = await asyncio.to_thread(load_for_inference, artifact)
        state["generator"] = Generator(model, tokenizer)
        yield

    app = create_base_app(f"forge {artifact.kind}", settings, ready=lambda: "generator" in state, lifespan=lifespan,
                          page="chat")
    created = int(time.time())

    def check_model(requested: str | None) -> Any:
        if requested not in (None, model_id):
            return error_response(404, f"model '{requested}' is not served here; this server serves '{model_id}'",
                                  "model")
        return None

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "forge"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Any:
        if (problem := check_model(request.model)) is not None:
            return problem
        generator: Generator = state["generator"]
        max_new = request.max_completion_tokens or request.max_tokens or 256
        inputs = generator.encode_chat(request.messages)
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if request.stream:
            return StreamingResponse(_chat_stream(generator, inputs, request, max_new, ident, model_id),
                                     media_type="text/event-stream")
        text, finish, n_prompt, n_new = await asyncio.to_thread(generator.generate, inputs, request, max_new)
        return {
            "id": ident, "object": "chat.completion", "created": int(time.time()), "model": model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new},
        }

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> Any:
        if (problem := check_model(request.model)) is not None:
            return problem
        generator: Generator = state["generator"]
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            return error_response(422, "prompt: must not be empty", "prompt")
        max_new = request.max_tokens or 16
        ident = f"cmpl-{uuid.uuid4().hex[:24]}"
        if request.stream:
            if len(prompts) != 1:
                return error_response(422, "prompt: streaming takes one prompt", "prompt")
            return StreamingResponse(_completion_stream(generator, prompts[0], request, max_new, ident, model_id),
                                     media_type="text/event-stream")
        choices, used_prompt, used_new = [], 0, 0
        for index, prompt in enumerate(prompts):
            inputs = generator.encode_text(prompt)
            text, finish, n_prompt, n_new = await asyncio.to_thread(generator.generate, inputs, request, max_new)
            choices.append({"index": index, "text": text, "finish_reason": finish, "logprobs": None})
            used_prompt, used_new = used_prompt + n_prompt, used_new + n_new
        return {"id": ident, "object": "text_completion", "created": int(time.time()), "model": model_id,
                "choices": choices,
                "usage": {"prompt_tokens": used_prompt, "completion_tokens": used_new,
                          "total_tokens": used_prompt + used_new}}

    return app


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _iterate_in_thread(iterator: Iterator[str]) -> AsyncIterator[str]:
    done = object()
    while True:
        piece = await asyncio.to_thread(next, iterator, done)
        if piece is done:
            return
        yield piece  # type: ignore[misc]


async def _chat_stream(generator: Generator, inputs: Any, request: ChatRequest, max_new: int, ident: str,
                       model_id: str) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _sse({"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_id,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    yield chunk({"role": "assistant", "content": ""})
    async for piece in _iterate_in_thread(generator.stream(inputs, request, max_new)):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"


async def _completion_stream(generator: Generator, prompt: str, request: CompletionRequest, max_new: int,
                             ident: str, model_id: str) -> AsyncIterator[str]:
    inputs = generator.encode_text(prompt)
    async for piece in _iterate_in_thread(generator.stream(inputs, request, max_new)):
        yield _sse({"id": ident, "object": "text_completion", "created": int(time.time()), "model": model_id,
                    "choices": [{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]})
    yield _sse({"id": ident, "object": "text_completion", "created": int(time.time()), "model": model_id,
                "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
    yield "data: [DONE]\n\n"
