"""An artifact's own server, started inside this process on a private Unix socket (no TCP port is opened).

``forge chat ARTIFACT`` talks to a local model exactly as it talks to a remote one (``--url``): through the
OpenAI-compatible API of the server plugin that serves the artifact's kind. So every format a server plugin can serve
(torch, ONNX, GGUF...) chats with the same chat template, stop handling and streaming, and no second inference path
has to be kept in step with the server's.

    with local_server(artifact) as server:
        client = server.http_client()          # httpx.Client bound to the socket
        client.get(f"{server.base_url}/health")
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.artifacts import Artifact
from forge.errors import ForgeError
from forge.serving.settings import ServeSettings


@dataclass
class LocalServer:
    """Where the in-process server listens: ``base_url`` is nominal, requests go through ``socket_path``."""

    socket_path: Path
    base_url: str = "http://forge.local"

    def http_client(self, timeout: float | None = None) -> Any:
        import httpx

        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket_path)), timeout=timeout)


@contextmanager
def local_server(artifact: Artifact, server_name: str | None = None, ready_timeout_s: float = 600.0,
                 settings: ServeSettings | None = None) -> Iterator[LocalServer]:
    """Build the app of the server that takes ``artifact.kind`` and run it with uvicorn in a daemon thread until the
    block ends. Waits until ``/ready`` answers 200 (the model is loaded) or the server thread dies."""
    import uvicorn

    from forge.cli.serve import pick_server
    from forge.plugins import get_plugins

    chosen = pick_server(get_plugins(), artifact.kind, server_name)
    # a request timeout fitted to a person reading a long answer, not to an API client
    settings = settings or ServeSettings.model_validate({"timeout_s": 3600.0, "max_body_bytes": 16_000_000})
    app = chosen.item.build(artifact, settings)
    directory = Path(tempfile.mkdtemp(prefix="forge-chat-"))
    directory.chmod(0o700)
    socket_path = directory / "server.sock"
    config = uvicorn.Config(app, uds=str(socket_path), log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
            if getattr(app.state, "fatal", None) is not None:  # the model failed to load in the background
                failure.append(app.state.fatal)
        except BaseException as error:  # reported to the waiting caller below
            failure.append(error)

    thread = threading.Thread(target=run, name="forge-local-server", daemon=True)
    thread.start()
    local = LocalServer(socket_path)
    try:
        _wait_ready(local, thread, failure, ready_timeout_s, artifact)
        yield local
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_ready(local: LocalServer, thread: threading.Thread, failure: list[BaseException], timeout_s: float,
                artifact: Artifact) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    with local.http_client(timeout=5) as client:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                if failure and isinstance(failure[0], ForgeError):
                    raise failure[0]
                reason = f": {failure[0]}" if failure else ""
                raise ForgeError(f"{artifact.path}: the model server stopped while loading{reason}")
            if local.socket_path.exists():
                try:
                    if client.get(f"{local.base_url}/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
    raise ForgeError(f"{artifact.path}: the model was not loaded after {timeout_s:.0f} s")
