"""Helpers shared by test modules (import as ``from support import Server``)."""

from __future__ import annotations

import subprocess
from collections import Counter
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


def burst(target: Any, path: str, good: list[Any], bad: list[Any] | None = None, *, clients: int = 64,
          requests: int = 128, headers: dict[str, str] | None = None, timeout: float = 120) -> Counter:
    """Issue 17's load check: ``requests`` POSTs to ``path`` from ``clients`` concurrent clients, every fourth one a
    ``bad`` body (when given), the others cycling through ``good``. A body given as a ``str`` is sent as is (JSON text,
    so a lone surrogate can be escaped in it). ``target`` is a server's base URL (an ``httpx.AsyncClient`` with
    ``clients`` connections) or an in-process client with ``.post`` (a ``fastapi.testclient.TestClient``: its app
    answers requests from ``clients`` threads concurrently). Returns a Counter of ``("good"|"bad", status)``, the
    status being the exception's class name when no answer came (a timeout, a reset connection)."""
    import asyncio
    import json
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    plan = [("bad", bad[i // 4 % len(bad)]) if bad and i % 4 == 3 else ("good", good[i % len(good)])
            for i in range(requests)]
    headers = {"Content-Type": "application/json", **(headers or {})}

    def content(body: Any) -> bytes:
        return (body if isinstance(body, str) else json.dumps(body)).encode()

    if isinstance(target, str):
        async def main() -> list[int | str]:
            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            async with httpx.AsyncClient(base_url=target, timeout=timeout, limits=limits) as client:
                async def one(body: Any) -> int | str:
                    try:
                        return (await client.post(path, content=content(body), headers=headers)).status_code
                    except httpx.HTTPError as error:
                        return type(error).__name__

                return await asyncio.gather(*(one(body) for _, body in plan))

        statuses = asyncio.run(main())
    else:
        def one(body: Any) -> int | str:
            try:
                return int(target.post(path, content=content(body), headers=headers, timeout=timeout).status_code)
            except Exception as error:  # an in-process app's crash: like a dropped connection
                return type(error).__name__

        with ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(one, [body for _, body in plan]))
    return Counter(zip([kind for kind, _ in plan], statuses, strict=True))


def assert_held(counts: Counter) -> None:
    """Every good request 2xx or 429 (the queue is full: back off), every bad one a 4xx, some good ones 200; no 5xx
    and no request left without an answer."""
    assert counts[("good", 200)] > 0, counts
    for kind, status in counts:
        if kind == "good":
            assert isinstance(status, int) and (200 <= status < 300 or status == 429), counts
        else:
            assert isinstance(status, int) and 400 <= status < 500, counts
