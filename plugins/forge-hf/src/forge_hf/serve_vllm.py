"""``forge serve ARTIFACT --engine vllm``: the same causal LM served by vLLM's OpenAI-compatible server (continuous
batching, paged attention, CUDA kernels), run as a child process.

    forge serve runs/sft-1 --engine vllm --port 8000
    # the same command vLLM documents, printed on stderr before it starts:
    #   python -m vllm.entrypoints.cli.main serve MODEL_DIR --served-model-name NAME --host ... --port ...

Written against vLLM 0.33 (``vllm serve`` = ``vllm.entrypoints.cli.main``; its flags are in
``vllm/entrypoints/common/cli_args.py`` and ``vllm/engine/arg_utils.py``). What forge passes:

- the model directory: a ``causal-lm`` artifact (or merged export) as it is; a ``causal-lm-adapter`` merged into its
  base first by forge's ``merged`` exporter, once, into ``FORGE_CACHE_DIR/vllm/`` (see :func:`merged_model`);
- ``--served-model-name``: the name forge's own server reports in ``/v1/models``, so clients need not change;
- ``--chat-template``: only when the model has none: forge's plain ``role: content`` prompt, so chat works alike;
- the API key in the ``VLLM_API_KEY`` environment variable (never on the command line, where ``ps`` shows it), and
  ``--middleware forge_hf.serve_vllm.RequireKey``: vLLM's own key check covers ``/v1``, ``/v2`` and ``/inference``
  only (its ``/invocations``, ``/metrics``, ``/docs`` stay open), this one every path but ``/health`` and ``/ping``
  (``Authorization: Bearer KEY``; forge's ``X-API-Key`` header is not taken by vLLM);
- ``--max-batch-size`` as ``--max-num-seqs`` (only when given: vLLM's default fits its scheduler), ``--grace-s`` as
  ``--shutdown-timeout`` (whole seconds), ``--keep-alive-s`` as ``VLLM_HTTP_TIMEOUT_KEEP_ALIVE``, ``--max-model-len``
  as is; ``--max-body-bytes``, ``--max-wait-ms``, ``--timeout-s``, ``--max-queue`` and ``--read-timeout-s`` have no
  vLLM equivalent and are refused when given.

Untested on a GPU in this project so far: the tests run the launcher against a stand-in ``vllm`` package.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.artifacts import Artifact
from forge.errors import ForgeError
from forge.serving.settings import ServeSettings

VLLM_MISSING = ("--engine vllm needs vLLM, which is not installed here: pip install vllm "
                "(it needs a CUDA GPU; without one, drop --engine to use forge's own server)")
NO_GPU = ("--engine vllm: no CUDA GPU visible (torch.cuda.is_available() is false); vLLM serves on a GPU. "
          "Drop --engine to use forge's own server")
# forge serve flags with no vLLM equivalent: refused when given (silently ignoring a limit would be worse)
NO_EQUIVALENT = {
    "--max-body-bytes": "vLLM has no request body limit (put a proxy in front)",
    "--max-wait-ms": "vLLM batches continuously and never waits to fill a batch",
    "--timeout-s": "vLLM has no per-request timeout (clients set their own)",
    "--max-queue": "vLLM queues without a bound and answers no 429",
    "--read-timeout-s": "vLLM's uvicorn has no header/body read timeout setting",
}
# Test hook, for tests only: skip the CUDA check (and the torch import) so the launcher can run against a stand-in
# vllm package on a machine without a GPU. Never set it elsewhere: vLLM itself would then fail to start.
TEST_ASSUME_CUDA = "FORGE_TEST_ASSUME_CUDA"
# forge_hf.serve_lm.plain_chat_prompt as a chat template, for models without one
PLAIN_CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
OPEN_PATHS = {"/health", "/ping"}  # liveness probes, open as forge's own /health


@dataclass(frozen=True)
class VllmCommand:
    """The child's command line and its environment changes (a value None removes the variable)."""

    argv: list[str]
    env: dict[str, str | None]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def shown(self) -> str:
        """The command as printed: the argv (it holds no secret) and the variables set, the key's value hidden."""
        names = [f"{k}=***" if k == "VLLM_API_KEY" else f"{k}={shlex.quote(v)}"
                 for k, v in self.env.items() if v is not None]
        return " ".join([*names, shlex.join(self.argv)])


def refuse_inapplicable(given: frozenset[str]) -> None:
    for flag, why in NO_EQUIVALENT.items():
        if flag in given:
            raise ForgeError(f"{flag}: does not apply to --engine vllm ({why}); drop it")


def check_runtime() -> None:
    """vLLM importable and a CUDA GPU visible, else one line (exit 2). Cheap first: no import of vllm itself."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ForgeError(VLLM_MISSING)
    if os.environ.get(TEST_ASSUME_CUDA) == "1":
        return
    import torch

    if not torch.cuda.is_available():
        raise ForgeError(NO_GPU)


def gpu_dtype() -> tuple[str, str]:
    """(dtype for vLLM's ``--dtype``, dtype for the merged exporter): bf16 where the GPU has it, as forge's own
    server picks; elsewhere vLLM's ``auto`` (fp16 for fp16/fp32 weights) and fp16 merged weights."""
    if os.environ.get(TEST_ASSUME_CUDA) == "1":
        return "auto", "fp32"
    import torch

    if torch.cuda.is_bf16_supported():
        return "bfloat16", "bf16"
    return "auto", "fp16"


def has_chat_template(model_dir: Path) -> bool:
    """Whether the tokenizer saved in ``model_dir`` has a chat template (read from its files, no transformers)."""
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


def vllm_command(model_dir: Path, served_name: str, settings: ServeSettings, given: frozenset[str], *,
                 dtype: str = "auto", chat_template: str | None = None,
                 python: str = sys.executable) -> VllmCommand:
    """``vllm serve`` for ``model_dir`` with forge's settings mapped (module docstring); pure, no vLLM needed."""
    argv = [python, "-m", "vllm.entrypoints.cli.main", "serve", str(model_dir),
            "--served-model-name", served_name, "--host", settings.host, "--port", str(settings.port),
            "--dtype", dtype, "--shutdown-timeout", str(math.ceil(settings.grace_s))]
    if settings.max_model_len is not None:
        argv += ["--max-model-len", str(settings.max_model_len)]
    if "--max-batch-size" in given:
        argv += ["--max-num-seqs", str(settings.max_batch_size)]
    if chat_template is not None:
        argv += ["--chat-template", chat_template]
    env: dict[str, str | None] = {
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(max(1, math.ceil(settings.keep_alive_s))),
        "VLLM_API_KEY": settings.api_key,  # None: removed, so a stray VLLM_API_KEY does not apply unannounced
        "FORGE_API_KEY": None,  # the child needs no copy of forge's
    }
    if settings.api_key:
        argv += ["--middleware", "forge_hf.serve_vllm.RequireKey"]
    return VllmCommand(argv, env)


def merged_model(artifact: Artifact, dtype: str) -> Path:
    """The adapter merged into its base by the ``merged`` exporter (parity-checked), cached in
    ``FORGE_CACHE_DIR/vllm/NAME-HASH`` keyed by the artifact's path, its manifest and adapter files and the dtype;
    written in a staged directory, so an interrupted merge leaves nothing behind.

    Why merge rather than vLLM's ``--enable-lora --lora-modules``: with LoRA, vLLM serves the base under one name
    and the adapter under another, and a request naming the base (or the first name in ``/v1/models``) silently
    gets the model without the fine-tune; vLLM 0.33 also refuses adapters with ``modules_to_save`` other than a
    classifier head (e.g. resized embeddings), DoRA, and ranks above ``--max-lora-rank``. Merged weights serve
    under one name exactly what forge's own server serves (it merges in memory) and run without LoRA kernels."""
    import hashlib

    from forge.cli.export import export_artifact

    from forge_hf.base_model import checked_base_model
    from forge_hf.provider import cache_dir

    checked_base_model(artifact)  # the base-model policy holds for a cached merge too
    stamp = [str(artifact.path.resolve()), dtype]
    for file in sorted(artifact.path.iterdir()):
        if file.name == "forge.json" or file.name.startswith("adapter_"):
            stat = file.stat()
            stamp.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    name = artifact.path.parent.name if artifact.path.name == "artifact" else artifact.path.name
    target = cache_dir() / "vllm" / f"{name}-{key}"
    if (target / "forge.json").is_file():
        print(f"[forge] using the merged weights in {target}", file=sys.stderr, flush=True)
        return target
    print(f"[forge] merging the adapter into its base for vLLM (once) → {target}", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    return export_artifact(artifact.path, "merged", target, {"dtype": dtype})


def run_child(command: VllmCommand) -> int:
    """Run the command in the foreground: SIGINT and SIGTERM forwarded to it (it runs in its own session, so a
    terminal's Ctrl-C reaches it once, through forge), its exit code returned (128 + N when a signal N ended it)."""
    lock = threading.Lock()
    pending: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: Any) -> None:
        with lock:
            if child:
                child[0].send_signal(signum)
            else:
                pending.append(signum)

    on_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
    try:
        process = subprocess.Popen(command.argv, env=command.environment(os.environ), start_new_session=True)
        with lock:
            child.append(process)
            for signum in pending:
                process.send_signal(signum)
        code = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code if code >= 0 else 128 - code


def launch(artifact: Artifact, settings: ServeSettings, given: frozenset[str]) -> int:
    """``forge.Server.launch`` of the ``vllm`` server: checks (one line, exit 2 each) before anything heavy, the
    merge for an adapter, then vLLM in the foreground; returns its exit code."""
    from forge_hf.serve_lm import model_name

    refuse_inapplicable(given)
    check_runtime()
    print(f"serving {artifact.kind} from {artifact.path} with vLLM on http://{settings.host}:{settings.port}",
          file=sys.stderr, flush=True)
    vllm_dtype, merge_dtype = gpu_dtype()
    model_dir = merged_model(artifact, merge_dtype) if artifact.kind == "causal-lm-adapter" else artifact.path
    template = None if has_chat_template(model_dir) else PLAIN_CHAT_TEMPLATE
    command = vllm_command(model_dir, model_name(artifact), settings, given, dtype=vllm_dtype,
                           chat_template=template)
    print(f"[forge] starting vLLM: {command.shown()}", file=sys.stderr, flush=True)
    return run_child(command)


class RequireKey:
    """ASGI middleware for vLLM's app (``--middleware forge_hf.serve_vllm.RequireKey``): every path but
    ``/health`` and ``/ping`` needs the key in ``VLLM_API_KEY`` as ``Authorization: Bearer KEY``, as on forge's own
    server; vLLM's own check (Bearer only, so not forge's ``X-API-Key``) covers only ``/v1``, ``/v2``,
    ``/inference`` and ``/cohere``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.key = os.environ.get("VLLM_API_KEY") or ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.key and scope.get("path") not in OPEN_PATHS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            scheme, _, given = headers.get("authorization", "").partition(" ")
            given = given.strip() if scheme.lower() == "bearer" else ""
            if not hmac.compare_digest(given.encode(), self.key.encode()):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = json.dumps({"error": {"message": "missing or wrong API key", "type": "unauthorized",
                                             "code": 401}}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
