"""Helpers shared by test modules (import as ``from support import Server``)."""

from __future__ import annotations

import subprocess
from typing import Any


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real ``forge serve`` process (uvicorn) on loopback, stopped on exit."""

    def __init__(self, forge: Any, *args: str, env: dict[str, str] | None = None, ready_timeout: float = 180):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = forge.popen("serve", *map(str, args), "--port", str(self.port), env=env or {})
        self.ready_timeout = ready_timeout

    def __enter__(self) -> Server:
        import time

        import httpx

        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.proc.kill()
        raise AssertionError("server did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
