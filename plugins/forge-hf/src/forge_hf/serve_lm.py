"""OpenAI-compatible server for causal LMs: torch (``causal-lm``, ``causal-lm-adapter``), ONNX Runtime
(``onnx-causal-lm``, backend in forge-onnx) and llama.cpp (``gguf-causal-lm``, through llama-cpp-python).

    forge serve runs/sft-1 --port 8000
    forge serve runs/sft-1/exports/onnx-int8 --port 8000
    forge serve runs/sft-1/exports/gguf-q8_0 --port 8000     # needs llama-cpp-python
    # then: openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(...)

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` too), ``POST /v1/completions``, plus the
serving core's ``/health``, ``/ready`` and ``/metrics``. The HTTP layer here is shared; what differs per format is a
small :class:`Backend`: prompt → token ids (chat template included), token ids → text, and prompt ids + sampling
options → a stream of new token ids ending after an EOS id or at the token budget. Stop strings, incremental
detokenisation, finish reasons and usage are the HTTP layer's, so every format answers alike. The torch backend
decodes concurrent requests together (:mod:`forge_hf.batched_generation`); ONNX Runtime and llama.cpp generate one
request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi.responses import StreamingResponse
from forge.artifacts import Artifact
from forge.errors import ForgeError
from forge.serving.app import QueueFull, Text, create_base_app, error_body, error_response, not_ready_response
from forge.serving.settings import DEFAULT_LM_BATCH_SIZE, ServeSettings
from pydantic import BaseModel, Field

MAX_STOP = 16  # stop strings per request (OpenAI takes 4)
MAX_STOP_CHARS = 256  # characters per stop string
MAX_PROMPTS = 16  # prompts in one /v1/completions request
DEFAULT_MAX_PROMPT_TOKENS = 8192  # when the model does not say its context length
StopText = Annotated[Text, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text


class SamplingFields(BaseModel):
    model: Text | None = None
    max_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP)] | None = None
    stream: bool = False
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)


class CompletionRequest(SamplingFields):
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_PROMPTS)]
    max_tokens: int | None = Field(16, ge=1, le=4096)


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None


class Backend(Protocol):
    """What the HTTP layer needs from a format. ``stream`` yields new token ids, the EOS id that ends generation
    included, and stops by itself at ``max_new_tokens``; closing the iterator early cancels generation."""

    stop_ids: set[int]

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def stream(self, prompt_ids: list[int], options: GenerationOptions) -> Iterator[int]: ...


def plain_chat_prompt(messages: list[dict[str, str]]) -> str:
    """The prompt for a model without a chat template."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


class HFTokenizerCodec:
    """Tokenisation with a transformers tokenizer (torch and ONNX backends): the chat template as transformers
    renders it, special tokens skipped when decoding."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = plain_chat_prompt(messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


def _stop_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    configured = getattr(generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if not ids and tokenizer.eos_token_id is not None:
        ids = [tokenizer.eos_token_id]
    return {int(i) for i in ids}


def load_for_inference(artifact: Artifact) -> tuple[Any, Any]:
    """Model (adapter merged in memory) and tokenizer of an LM artifact, on GPU when there is one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge_hf.base_model import resolve_base_model
    from forge_hf.provider import auto_device, auto_dtype

    dtype = auto_dtype()
    # an adapter's base passes the base-model policy before anything loads
    base_source = resolve_base_model(artifact)[0] if artifact.kind == "causal-lm-adapter" else None
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    if base_source is not None:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_source, dtype=dtype, use_safetensors=True)
        model = PeftModel.from_pretrained(base, artifact.path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=dtype, use_safetensors=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(auto_device()).eval()
    return model, tokenizer


class LlamaCppBackend:
    """A GGUF through llama-cpp-python (:class:`forge_hf.llama_cpp_runtime.LlamaCppCausalLM`): llama.cpp's tokenizer
    and samplers, the chat template and end-of-generation tokens stored in the GGUF."""

    def __init__(self, path: Path, threads: int | None = None, n_ctx: int = 4096) -> None:
        from forge_hf.llama_cpp_runtime import LlamaCppCausalLM

        self.lm = LlamaCppCausalLM(path, n_ctx=n_ctx, threads=threads)
        self.max_prompt_tokens = n_ctx - 1
        metadata = dict(self.lm.llm.metadata)
        self.chat_template = metadata.get("tokenizer.chat_template")
        vocab = self.lm.llm.n_vocab()
        self.stop_ids = {i for i in range(vocab) if self.lm.is_stop(i)}
        self.bos = self._token_text(metadata.get("tokenizer.ggml.bos_token_id"))
        self.eos = self._token_text(metadata.get("tokenizer.ggml.eos_token_id"))

    def _token_text(self, token: Any) -> str:
        if token is None:
            return ""
        return self.lm.llm.detokenize([int(token)], special=True).decode("utf-8", errors="replace")

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if self.chat_template:
            text = render_chat_template(self.chat_template, messages, self.bos, self.eos)
        else:
            text = plain_chat_prompt(messages)
        return self.lm.tokenize(text)

    def encode_text(self, text: str) -> list[int]:
        return self.lm.tokenize(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.lm.detokenize(ids)

    def stream(self, prompt_ids: list[int], options: GenerationOptions) -> Iterator[int]:
        return self.lm.stream(prompt_ids, options.max_new_tokens, temperature=options.temperature,
                              top_p=options.top_p, seed=options.seed)


def render_chat_template(template: str, messages: list[dict[str, str]], bos_token: str, eos_token: str) -> str:
    """A Hugging Face chat template (as stored in a GGUF) rendered the way transformers renders it: sandboxed
    jinja2, ``trim_blocks``/``lstrip_blocks``, the generation prompt appended."""
    from datetime import datetime

    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token=bos_token,
                                            eos_token=eos_token)


class TextStream:
    """New text of one completion, piece by piece: tokens decoded incrementally (an incomplete UTF-8 character is
    held back), cut at the first stop string (text that may be the start of one is held back until it is not), the
    EOS token left out. After iteration: ``finish_reason`` and ``completion_tokens``."""

    def __init__(self, backend: Backend, prompt_ids: list[int], options: GenerationOptions,
                 stop: str | list[str] | None, should_stop: Callable[[], bool] | None = None) -> None:
        self.backend = backend
        self.prompt_ids = prompt_ids
        self.options = options
        self.stops = [s for s in ([stop] if isinstance(stop, str) else list(stop or [])) if s]
        self.finish_reason = "length"
        self.completion_tokens = 0
        self.should_stop = should_stop  # checked at every token: a client gone or out of time cancels generation

    def _held(self, text: str) -> int:
        """How many trailing characters of ``text`` could begin a stop string."""
        return max((k for s in self.stops for k in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:k])), default=0)

    def __iter__(self) -> Iterator[str]:
        tokens = self.backend.stream(self.prompt_ids, self.options)
        ids: list[int] = []
        sent = 0
        text = ""
        try:
            for token in tokens:
                if self.should_stop is not None and self.should_stop():
                    self.finish_reason = "cancelled"
                    return
                self.completion_tokens += 1
                if token in self.backend.stop_ids:
                    self.finish_reason = "stop"
                    break
                ids.append(token)
                text = self.backend.decode(ids)
                if text.endswith("\ufffd"):
                    continue
                cut = min((i for s in self.stops if (i := text.find(s)) >= 0), default=-1)
                if cut >= 0:
                    self.finish_reason = "stop"
                    if cut > sent:
                        yield text[sent:cut]
                    return
                safe = len(text) - self._held(text)
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
            else:
                if self.completion_tokens < self.options.max_new_tokens:
                    self.finish_reason = "stop"  # the backend ended on its own (an end-of-generation token)
            if len(text) > sent:  # held back for a stop string that never came
                yield text[sent:]
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()


def model_name(artifact: Artifact) -> str:
    model_id = artifact.manifest.get("base_model") or artifact.path.name
    return f"{artifact.path.parent.name}/{artifact.path.name}" if artifact.path.name == "artifact" else model_id


class GenerationFailed(Exception):
    """A generation that ended in an error: ``status`` 504 when out of time, else 500."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Job:
    """One request's generation: run by the worker thread, its pieces handed to the request's event loop."""

    text_stream: TextStream
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[tuple[str, Any]]
    deadline: float
    cancel: threading.Event

    def send(self, kind: str, value: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            self.loop.call_soon_threadsafe(self.out.put_nowait, (kind, value))

    def stopped(self) -> bool:
        return self.cancel.is_set() or time.monotonic() > self.deadline

    async def pieces(self) -> AsyncIterator[str]:
        """The text as it is generated; raises :class:`GenerationFailed`. Leaving early (client gone, request
        timed out, stream closed) cancels the generation at its next token."""
        try:
            while True:
                kind, value = await self.out.get()
                if kind == "piece":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            self.cancel.set()


class GenerationWorker:
    """The threads that run generations: one for a backend that generates one request at a time, as many as a
    batching backend decodes together (each thread feeds one row and reads its tokens). Requests wait in a bounded
    queue (full → :class:`QueueFull`, answered 429 with Retry-After); an exception in one generation is handed to
    that request alone; a request cancelled or out of time stops at its next token, or is skipped if still waiting.
    ``alive()`` is false if a thread died (``/health`` then says 503)."""

    def __init__(self, max_queue: int, concurrency: int = 1) -> None:
        self.max_queue = max_queue
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.rejected = 0
        self.completed = 0
        self.failed = 0
        self.running = 0
        self.counter_lock = threading.Lock()
        self.mean_seconds = 1.0  # moving average of one generation's duration, for Retry-After
        self.concurrency = max(1, concurrency)
        self.died: str | None = None
        self.threads = [threading.Thread(target=self._run, name=f"forge-generation-{i}", daemon=True)
                        for i in range(self.concurrency)]
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self.threads)

    def depth(self) -> int:
        return self.jobs.qsize()

    def submit(self, text_stream: TextStream, timeout_s: float) -> Job:
        if self.depth() >= self.max_queue:
            self.rejected += 1
            raise QueueFull(retry_after_s=self.mean_seconds * (self.depth() + 1) / self.concurrency)
        cancel = threading.Event()
        job = Job(text_stream, asyncio.get_running_loop(), asyncio.Queue(), time.monotonic() + timeout_s, cancel)
        text_stream.should_stop = job.stopped
        self.jobs.put(job)
        return job

    def stop(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)

    def _run(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                self._serve(job)
        except BaseException as error:  # never expected: /health reports it
            self.died = f"generation worker died: {type(error).__name__}: {error}"
            raise

    def _serve(self, job: Job) -> None:
        if job.stopped():  # the client left or ran out of time while waiting
            job.send("error", GenerationFailed(504, "request timed out while waiting for the model"))
            return
        started = time.monotonic()
        with self.counter_lock:
            self.running += 1
        try:
            for piece in job.text_stream:
                job.send("piece", piece)
            if job.text_stream.finish_reason == "cancelled" and not job.cancel.is_set():
                job.send("error", GenerationFailed(504, "request timed out during generation"))
            else:
                job.send("end")
            failed = False
        except Exception as error:  # this request's failure only
            failed = True
            job.send("error", GenerationFailed(500, f"generation failed: {type(error).__name__}: {error}"))
        with self.counter_lock:
            self.running -= 1
            self.failed += failed
            self.completed += not failed
            self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.monotonic() - started)


def create_openai_app(artifact: Artifact, settings: ServeSettings, load_backend: Callable[[], Backend],
                      model_id: str | None = None, concurrency: int = 1) -> Any:
    """The FastAPI app: the OpenAI routes over the backend ``load_backend()`` returns. The port opens at once; the
    backend loads in a worker thread meanwhile (``/ready`` and the generation routes answer 503 until it is loaded;
    if loading fails the server stops and ``forge serve`` reports why, exit 2)."""
    state: dict[str, Any] = {}
    model_id = model_id or model_name(artifact)
    worker = GenerationWorker(settings.max_queue, concurrency)

    async def load(app: Any) -> None:
        try:
            state["backend"] = await asyncio.to_thread(load_backend)
        except Exception as error:
            state["fatal"] = f"the model failed to load: {type(error).__name__}: {error}"
            app.state.fatal = error
            stop = getattr(app.state, "stop_server", None)
            if stop is not None:
                stop()

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        loading = asyncio.create_task(load(app))
        yield
        worker.stop()
        loading.cancel()

    def healthy() -> str | None:
        if worker.died or not worker.alive():
            return worker.died or "generation worker is not running"
        return state.get("fatal")

    app = create_base_app(f"forge {artifact.kind}", settings, ready=lambda: "backend" in state, lifespan=lifespan,
                          page="chat", healthy=healthy)
    metrics = app.state.metrics
    metrics.gauge("forge_queue_depth", "generation requests waiting for the model", worker.depth)
    metrics.gauge("forge_generation_running", "generations running now", lambda: worker.running)
    metrics.gauge("forge_queue_rejected_total", "requests answered 429 because the queue was full",
                  lambda: worker.rejected, kind="counter")
    metrics.gauge("forge_generation_failed_total", "generations that ended in an error", lambda: worker.failed,
                  kind="counter")
    metrics.gauge("forge_generation_completed_total", "generations completed", lambda: worker.completed,
                  kind="counter")
    app.state.worker = worker
    created = int(time.time())

    def check_model(requested: str | None) -> Any:
        if requested not in (None, model_id):
            return error_response(404, f"model '{requested}' is not served here; this server serves '{model_id}'",
                                  "model")
        return None

    def options(request: SamplingFields, max_new: int) -> GenerationOptions:
        return GenerationOptions(max_new_tokens=max_new, temperature=request.temperature, top_p=request.top_p,
                                 seed=request.seed)

    def prompt_problem(backend: Backend, prompt_ids: list[int], field: str) -> Any:
        limit = int(getattr(backend, "max_prompt_tokens", None) or DEFAULT_MAX_PROMPT_TOKENS)
        if not prompt_ids:
            return error_response(422, f"{field}: empty after tokenisation; give some text", field)
        if len(prompt_ids) > limit:
            return error_response(422, f"{field}: {len(prompt_ids)} tokens; this model takes at most {limit}", field)
        return None

    async def complete(text_stream: TextStream) -> str:
        job = worker.submit(text_stream, settings.timeout_s)
        return "".join([piece async for piece in job.pieces()])

    def failure(error: GenerationFailed) -> Any:
        return error_response(error.status, error.message)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "forge"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Any:
        if (problem := check_model(request.model)) is not None:
            return problem
        if "backend" not in state:
            return not_ready_response()
        backend: Backend = state["backend"]
        max_new = request.max_completion_tokens or request.max_tokens or 256
        prompt_ids = await asyncio.to_thread(backend.encode_chat, [m.model_dump() for m in request.messages])
        if (problem := prompt_problem(backend, prompt_ids, "messages")) is not None:
            return problem
        text_stream = TextStream(backend, prompt_ids, options(request, max_new), request.stop)
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if request.stream:
            job = worker.submit(text_stream, settings.timeout_s)
            return StreamingResponse(_chat_stream(job, ident, model_id), media_type="text/event-stream")
        try:
            text = await complete(text_stream)
        except GenerationFailed as error:
            return failure(error)
        used = _usage(len(prompt_ids), text_stream.completion_tokens)
        return {
            "id": ident, "object": "chat.completion", "created": int(time.time()), "model": model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": text_stream.finish_reason, "logprobs": None}],
            "usage": used,
        }

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> Any:
        if (problem := check_model(request.model)) is not None:
            return problem
        if "backend" not in state:
            return not_ready_response()
        backend: Backend = state["backend"]
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        max_new = request.max_tokens or 16
        ident = f"cmpl-{uuid.uuid4().hex[:24]}"
        if request.stream and len(prompts) != 1:
            return error_response(422, "prompt: streaming takes one prompt", "prompt")
        encoded = [await asyncio.to_thread(backend.encode_text, prompt) for prompt in prompts]
        for index, prompt_ids in enumerate(encoded):
            field = "prompt" if isinstance(request.prompt, str) else f"prompt.{index}"
            if (problem := prompt_problem(backend, prompt_ids, field)) is not None:
                return problem
        if request.stream:
            text_stream = TextStream(backend, encoded[0], options(request, max_new), request.stop)
            job = worker.submit(text_stream, settings.timeout_s)
            return StreamingResponse(_completion_stream(job, ident, model_id), media_type="text/event-stream")
        choices, used_prompt, used_new = [], 0, 0
        for index, prompt_ids in enumerate(encoded):
            text_stream = TextStream(backend, prompt_ids, options(request, max_new), request.stop)
            try:
                text = await complete(text_stream)
            except GenerationFailed as error:
                return failure(error)
            choices.append({"index": index, "text": text, "finish_reason": text_stream.finish_reason,
                            "logprobs": None})
            used_prompt, used_new = used_prompt + len(prompt_ids), used_new + text_stream.completion_tokens
        return {"id": ident, "object": "text_completion", "created": int(time.time()), "model": model_id,
                "choices": choices, "usage": _usage(used_prompt, used_new)}

    return app


def create_lm_app(artifact: Artifact, settings: ServeSettings) -> Any:
    """``forge serve`` on a ``causal-lm`` / ``causal-lm-adapter`` artifact: transformers on torch, concurrent
    requests decoded together (:mod:`forge_hf.batched_generation`, up to ``--max-batch-size`` rows a wave)."""
    from forge_hf.batched_generation import BatchedTorchBackend

    def load() -> Backend:
        return BatchedTorchBackend(*load_for_inference(artifact), max_batch=rows, max_wait_ms=settings.max_wait_ms)

    rows = settings.batch_size(DEFAULT_LM_BATCH_SIZE)
    return create_openai_app(artifact, settings, load, concurrency=rows)


LLAMA_CPP_MISSING = ("serving a GGUF needs llama-cpp-python, which is not installed: run `make llama-cpp` in a forge "
                     "checkout, or pip install llama-cpp-python (compiles llama.cpp: a few minutes, a C++ compiler)")


def create_gguf_app(artifact: Artifact, settings: ServeSettings) -> Any:
    """``forge serve`` on a ``gguf-causal-lm`` export: llama.cpp through llama-cpp-python (checked before anything
    starts). Threads: ``FORGE_LLAMA_THREADS``, default every core."""
    import os

    from forge_hf.llama_cpp_runtime import available

    if available() is not None:
        raise ForgeError(LLAMA_CPP_MISSING)
    path = artifact.path / str(artifact.manifest.get("gguf_file", ""))
    if not path.is_file():
        raise ForgeError(f"{artifact.path}: no GGUF file ({artifact.manifest.get('gguf_file')!r} in forge.json)")
    threads = int(os.environ.get("FORGE_LLAMA_THREADS", "0")) or None
    return create_openai_app(artifact, settings, lambda: LlamaCppBackend(path, threads))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _chat_stream(job: Job, ident: str, model_id: str) -> AsyncIterator[str]:
    """Server-sent events; a failure mid-stream is an ``{"error": ...}`` event, and every stream ends with
    ``[DONE]``."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _sse({"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_id,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in job.pieces():
            yield chunk({"content": piece})
        yield chunk({}, job.text_stream.finish_reason)
    except GenerationFailed as error:
        yield _sse(error_body(error.status, error.message))
    finally:
        job.cancel.set()
    yield "data: [DONE]\n\n"


async def _completion_stream(job: Job, ident: str, model_id: str) -> AsyncIterator[str]:
    def chunk(text: str, finish: str | None = None) -> str:
        return _sse({"id": ident, "object": "text_completion", "created": int(time.time()), "model": model_id,
                     "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]})

    try:
        async for piece in job.pieces():
            yield chunk(piece)
        yield chunk("", job.text_stream.finish_reason)
    except GenerationFailed as error:
        yield _sse(error_body(error.status, error.message))
    finally:
        job.cancel.set()
    yield "data: [DONE]\n\n"
