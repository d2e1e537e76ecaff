"""``forge serve ARTIFACT``: an HTTP inference server for an artifact, picked by its kind."""

from __future__ import annotations

import os
import signal
import threading

import typer

from forge.config import ConfigSource, validate
from forge.contributions import Registered
from forge.errors import ForgeError
from forge.plugins import PluginSet, get_plugins
from forge.serving.settings import ServeSettings


def engine_of(server: Registered) -> str:
    return str(getattr(server.item, "engine", "forge"))


def pick_server(plugins: PluginSet, kind: str, name: str | None, engine: str = "forge") -> Registered:
    """The server for ``kind`` on ``engine`` (``--server NAME`` when several); one line, exit 2, when none."""
    if name:
        server = plugins.get("servers", name)
        if engine_of(server) != engine:
            raise ForgeError(f"--server {name}: {server.qualified} runs on engine {engine_of(server)}, "
                             f"not {engine}; give --engine {engine_of(server)}")
        if kind not in server.item.accepts:
            raise ForgeError(f"--server {name}: {server.qualified} does not serve {kind} artifacts "
                             f"(it serves {', '.join(server.item.accepts)})")
        return server
    on_engine = [r for r in plugins.all("servers") if engine_of(r) == engine]
    accepting = [r for r in on_engine if kind in r.item.accepts]
    if not accepting:
        known = sorted({k for r in on_engine for k in r.item.accepts})
        if engine != "forge":
            raise ForgeError(f"--engine {engine} does not serve {kind} artifacts "
                             f"(it serves {', '.join(known)}); drop --engine to use forge's own server")
        hint = f"; installed servers take: {', '.join(known)}" if known else "; no server plugin installed"
        raise ForgeError(f"no server for {kind} artifacts{hint}")
    if len(accepting) > 1:
        raise ForgeError(f"several servers take {kind} artifacts; pick one with --server: "
                         + ", ".join(r.qualified for r in accepting))
    return accepting[0]


def given_flags(ctx: typer.Context) -> frozenset[str]:
    """The options the user set on the command line (or through an environment variable), as ``--flag`` names."""
    given: set[str] = set()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT"):  # typer may vendor its own click
            given.update(o for o in param.opts if o.startswith("--"))
    return frozenset(given)


def read_key_file(path: str) -> str:
    """The key in ``path``: its first line, stripped (so ``echo KEY > file`` works); one line when unreadable."""
    from pathlib import Path

    file = Path(path)
    try:
        if not file.is_file():
            raise ForgeError(f"--api-key-file {path}: not a file")
        with file.open("rb") as handle:
            raw = handle.read(4097)
    except OSError as error:
        raise ForgeError(f"--api-key-file {path}: cannot read it ({error.strerror})") from None
    if len(raw) > 4096:
        raise ForgeError(f"--api-key-file {path}: over 4096 bytes; it should hold only the key")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ForgeError(f"--api-key-file {path}: not UTF-8 text") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise ForgeError(f"--api-key-file {path}: empty; put the key on its first line")
    return key


def serve_settings(flags: dict[str, object]) -> ServeSettings:
    """The flags as :class:`ServeSettings`, every bad one reported at once (``--port 0: port: ...``), exit 2.
    The key: ``--api-key``, else ``--api-key-file``, else ``FORGE_API_KEY`` (giving two flags is an error)."""
    source = ConfigSource()
    flags = dict(flags)
    key_file = flags.pop("--api-key-file", None)
    if key_file is not None:
        if flags.get("--api-key") is not None:
            raise ForgeError("--api-key and --api-key-file: give one of them")
        flags["--api-key"] = read_key_file(str(key_file))
    for flag, value in flags.items():
        if flag == "--api-key" and key_file is not None:
            where = f"--api-key-file {key_file}"
        elif flag == "--api-key" and value is None:
            value = os.environ.get("FORGE_API_KEY") or None
            where = "FORGE_API_KEY"
        elif flag == "--api-key":
            where = "--api-key"  # never echo the key itself
        else:
            where = f"{flag} {value}"
        if value is not None:
            source.set(flag.removeprefix("--").replace("-", "_"), value, where)
    settings: ServeSettings = validate(ServeSettings, source)  # type: ignore[assignment]
    return settings


def serve(
    ctx: typer.Context,
    artifact: str = typer.Argument(..., help="A completed run directory, an artifact or export directory, or "
                                             "models:/NAME/VERSION or models:/NAME@ALIAS."),
    engine: str = typer.Option("forge", "--engine", help="forge (its own server, this process) or vllm (vLLM's "
                                                        "OpenAI server as a child process; causal LMs, CUDA GPU)."),
    server: str = typer.Option(None, "--server", help="Server name, when several take this kind."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str = typer.Option(None, "--api-key", help="Require this key (Bearer or X-API-Key); visible in ps, "
                                                        "prefer --api-key-file or env FORGE_API_KEY."),
    api_key_file: str = typer.Option(None, "--api-key-file", help="Require the key on this file's first line."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="Reject larger request bodies (413)."),
    max_batch_size: int = typer.Option(None, "--max-batch-size", help="Micro-batch at most this many requests "
                                                                      "(default 16; LM servers 64)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Wait at most this long to fill a micro-batch."),
    timeout_s: float = typer.Option(60.0, "--timeout-s", help="Give up on a request after this long (504)."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests waiting beyond this many get 429 + Retry-After."),
    read_timeout_s: float = typer.Option(5.0, "--read-timeout-s",
                                         help="Headers, then body, must arrive within this long (cut / 408)."),
    keep_alive_s: float = typer.Option(5.0, "--keep-alive-s", help="Close idle keep-alive connections after this."),
    grace_s: float = typer.Option(5.0, "--grace-s", help="On SIGTERM, wait at most this long for requests."),
    max_model_len: int = typer.Option(None, "--max-model-len",
                                      help="--engine vllm: context length (default: the model's)."),
) -> None:
    """Serve an artifact over HTTP. Example: forge serve runs/sft-1 --port 8000"""
    from forge.references import resolve_reference

    given = given_flags(ctx)
    settings = serve_settings({
        "--host": host, "--port": port, "--api-key": api_key, "--max-body-bytes": max_body_bytes,
        "--max-batch-size": max_batch_size, "--max-wait-ms": max_wait_ms, "--timeout-s": timeout_s,
        "--max-queue": max_queue, "--read-timeout-s": read_timeout_s, "--keep-alive-s": keep_alive_s,
        "--grace-s": grace_s, "--api-key-file": api_key_file, "--max-model-len": max_model_len,
    })
    plugins = get_plugins()
    engines = ["forge", *sorted({engine_of(r) for r in plugins.all("servers")} - {"forge"})]
    if engine not in engines:
        raise ForgeError(f"--engine {engine}: expected {' or '.join(engines)}"
                         + ("" if engine != "vllm" else " (the vllm engine comes with forge-hf)"))
    if engine == "forge" and max_model_len is not None:
        raise ForgeError("--max-model-len: only with --engine vllm (forge's server takes the model's context length)")
    from forge.serving.runner import exposure_warning

    warning = exposure_warning(settings.host, settings.api_key)
    if warning:  # first, before any loading: the operator sees it even if the artifact is wrong
        typer.echo(warning, err=True)
    on_engine = [r for r in plugins.all("servers") if engine_of(r) == engine]
    served = {k for r in on_engine for k in r.item.accepts}
    reference = resolve_reference(artifact, tuple(sorted(served)) if served else None)
    if reference.note:
        typer.echo(reference.note, err=True)
    loaded = reference.artifact
    chosen = pick_server(plugins, loaded.kind, server, engine)
    if engine != "forge":  # the engine's launcher checks what it needs, then says what it starts
        raise typer.Exit(chosen.item.run_engine(loaded, settings, given))
    app = chosen.item.build(loaded, settings)
    from forge.serving.runner import serve as run_server

    typer.echo(f"serving {loaded.kind} from {loaded.path} with {chosen.qualified} on http://{host}:{port}", err=True)
    # uvicorn handles SIGTERM itself (grace period) and raises it again once stopped: the process then ends by it,
    # as servers under a supervisor are expected to, not through forge's "interrupted" (exit 130)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        run_server(app, settings)
    except ForgeError:
        raise
    except Exception as error:  # the model failed to load in the background
        raise ForgeError(f"{loaded.path}: cannot serve it: {type(error).__name__}: {error}") from None
