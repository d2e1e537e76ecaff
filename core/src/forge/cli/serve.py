"""``forge serve ARTIFACT``: an HTTP inference server for an artifact, picked by its kind."""

from __future__ import annotations

import os

import typer

from forge.config import ConfigSource, validate
from forge.contributions import Registered
from forge.errors import ForgeError
from forge.plugins import PluginSet, get_plugins
from forge.serving.settings import ServeSettings


def pick_server(plugins: PluginSet, kind: str, name: str | None) -> Registered:
    if name:
        server = plugins.get("servers", name)
        if kind not in server.item.accepts:
            raise ForgeError(f"--server {name}: {server.qualified} does not serve {kind} artifacts "
                             f"(it serves {', '.join(server.item.accepts)})")
        return server
    accepting = [r for r in plugins.all("servers") if kind in r.item.accepts]
    if not accepting:
        known = sorted({k for r in plugins.all("servers") for k in r.item.accepts})
        hint = f"; installed servers take: {', '.join(known)}" if known else "; no server plugin installed"
        raise ForgeError(f"no server for {kind} artifacts{hint}")
    if len(accepting) > 1:
        raise ForgeError(f"several servers take {kind} artifacts; pick one with --server: "
                         + ", ".join(r.qualified for r in accepting))
    return accepting[0]


def serve_settings(flags: dict[str, object]) -> ServeSettings:
    """The flags as :class:`ServeSettings`, every bad one reported at once (``--port 0: port: ...``), exit 2."""
    source = ConfigSource()
    for flag, value in flags.items():
        if flag == "--api-key" and value is None:
            value = os.environ.get("FORGE_API_KEY") or None
            where = "FORGE_API_KEY"
        else:
            where = f"{flag} {value}"
        if value is not None:
            source.set(flag.removeprefix("--").replace("-", "_"), value, where)
    settings: ServeSettings = validate(ServeSettings, source)  # type: ignore[assignment]
    return settings


def serve(
    artifact: str = typer.Argument(..., help="A completed run directory, an artifact or export directory, or "
                                             "models:/NAME/VERSION or models:/NAME@ALIAS."),
    server: str = typer.Option(None, "--server", help="Server name, when several take this kind."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str = typer.Option(None, "--api-key", help="Require this key (Bearer or X-API-Key); env FORGE_API_KEY."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="Reject larger request bodies (413)."),
    max_batch_size: int = typer.Option(16, "--max-batch-size", help="Micro-batch at most this many requests."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Wait at most this long to fill a micro-batch."),
    timeout_s: float = typer.Option(60.0, "--timeout-s", help="Give up on a request after this long (504)."),
) -> None:
    """Serve an artifact over HTTP. Example: forge serve runs/sft-1 --port 8000"""
    from forge.references import resolve_reference

    settings = serve_settings({
        "--host": host, "--port": port, "--api-key": api_key, "--max-body-bytes": max_body_bytes,
        "--max-batch-size": max_batch_size, "--max-wait-ms": max_wait_ms, "--timeout-s": timeout_s,
    })
    plugins = get_plugins()
    served = {k for r in plugins.all("servers") for k in r.item.accepts}
    reference = resolve_reference(artifact, tuple(sorted(served)) if served else None)
    if reference.note:
        typer.echo(reference.note, err=True)
    loaded = reference.artifact
    chosen = pick_server(plugins, loaded.kind, server)
    app = chosen.item.build(loaded, settings)
    import uvicorn

    typer.echo(f"serving {loaded.kind} from {loaded.path} with {chosen.qualified} on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
