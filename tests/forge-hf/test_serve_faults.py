"""Failure isolation, back-pressure and slow clients in the OpenAI server (issues 17 and 20): an app over a scripted
backend run by uvicorn on loopback in this process (seconds each), and one real ``forge serve`` of a tiny LM."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from forge.serving.runner import DropQueryString, uvicorn_config
from forge.serving.settings import ServeSettings
from forge_hf.serve_lm import GenerationOptions, create_openai_app
from support import Server, free_port

EOS = 0


class ScriptedBackend:
    """Token = one byte (+1), EOS 0. Streams ``answer`` one token every ``delay`` s; ``boom`` in the prompt raises
    in the middle of generation (a bug in a backend); counts the tokens it produced."""

    stop_ids = {EOS}
    max_prompt_tokens = 64

    def __init__(self, answer: str = "hello there", delay: float = 0.0) -> None:
        self.answer = [b + 1 for b in answer.encode()]
        self.delay = delay
        self.produced = 0

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i - 1 for i in ids if i != EOS).decode("utf-8", errors="replace")

    def encode_text(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode()]

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode_text(messages[-1]["content"])

    def stream(self, prompt_ids: list[int], options: GenerationOptions) -> Iterator[int]:
        boom = self.decode(prompt_ids) == "boom"
        for i, token in enumerate(self.answer[: options.max_new_tokens]):
            if boom and i == 2:
                raise RuntimeError("cannot reshape tensor of 0 elements")
            time.sleep(self.delay)
            self.produced += 1
            yield token
        yield EOS


@contextmanager
def running(backend: Any, load: Any = None, **settings: Any) -> Iterator[Any]:
    """The OpenAI app over ``backend`` under uvicorn (forge's settings: guarded protocol, timeouts) on loopback."""
    import uvicorn

    config_settings = ServeSettings.model_validate({"port": free_port(), **settings})
    app = create_openai_app(SimpleNamespace(kind="causal-lm"), config_settings, load or (lambda: backend),
                            model_id="m")
    server = uvicorn.Server(uvicorn_config(app, config_settings, log_level="error"))
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config_settings.port}"
    deadline = time.time() + 20
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    app.state.url = url
    app.state.thread = thread
    try:
        yield app
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **extra}


def sse_events(response: httpx.Response) -> list[Any]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


def test_a_failing_generation_answers_its_request_alone():
    backend = ScriptedBackend()
    with running(backend) as app:
        url = app.state.url
        for _ in range(8):  # more than any worker pool: nothing wedges
            r = httpx.post(f"{url}/v1/chat/completions", json=chat("boom", stream=True), timeout=10)
            events = sse_events(r)
            assert r.status_code == 200 and events[-1] == "[DONE]"
            error = json.loads(events[-2])["error"]
            assert error["code"] == 500 and "cannot reshape" in error["message"]
            r = httpx.post(f"{url}/v1/chat/completions", json=chat("boom"), timeout=10)
            assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        r = httpx.post(f"{url}/v1/chat/completions", json=chat("hi"), timeout=10)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hello there"
        assert httpx.get(f"{url}/health").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert "forge_generation_failed_total 16" in metrics


@pytest.mark.parametrize("body, param", [
    (chat("hi", seed=2**70), "seed"),
    (chat("hi", stream=True, seed=-1), "seed"),
    (chat("hi", stop=["x"] * 17), "stop"),
    (chat("hi", stop="y" * 257), "stop"),
    (chat("hi", n=2), "n"),
    (chat("x" * 65), "messages"),  # over the backend's prompt limit
    (chat(""), "messages"),  # nothing to generate from
    ({"messages": []}, "messages"),
])
def test_bad_input_is_a_422_naming_the_field(body, param):
    with running(ScriptedBackend()) as app:
        r = httpx.post(f"{app.state.url}/v1/chat/completions", json=body, timeout=10)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"].startswith(param)
        ok = httpx.post(f"{app.state.url}/v1/chat/completions", json=chat("hi"), timeout=10)
        assert ok.status_code == 200


def test_lone_surrogates_are_422_naming_the_field():
    with running(ScriptedBackend()) as app:
        raw = '{"messages": [{"role": "user", "content": "a\\ud800b"}]}'
        r = httpx.post(f"{app.state.url}/v1/chat/completions", content=raw,
                       headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 422 and r.json()["error"]["param"] == "messages.0.content"
        raw = '{"prompt": ["ok", "\\udfff"]}'
        r = httpx.post(f"{app.state.url}/v1/completions", content=raw,
                       headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 422 and "prompt" in r.json()["error"]["param"]


def test_timeouts_and_disconnects_cancel_generation():
    backend = ScriptedBackend("x" * 200, delay=0.02)  # 4 s in all
    with running(backend, timeout_s=0.5) as app:
        start = time.monotonic()
        r = httpx.post(f"{app.state.url}/v1/chat/completions", json=chat("hi"), timeout=10)
        assert r.status_code == 504 and time.monotonic() - start < 2
        time.sleep(0.3)
        produced = backend.produced
        assert produced < 60  # stopped, not run to its end
        time.sleep(0.3)
        assert backend.produced == produced
    backend = ScriptedBackend("x" * 200, delay=0.02)
    with running(backend) as app:
        with httpx.stream("POST", f"{app.state.url}/v1/chat/completions", json=chat("hi", stream=True),
                          timeout=10) as r:
            next(r.iter_lines())
        time.sleep(0.5)
        produced = backend.produced
        time.sleep(0.3)
        assert backend.produced == produced < 100  # the client left: generation stopped
        ok = httpx.post(f"{app.state.url}/v1/chat/completions", json=chat("hi", max_tokens=3), timeout=10)
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "xxx"


def test_a_full_queue_answers_429_with_retry_after_and_metrics_show_it():
    backend = ScriptedBackend("x" * 20, delay=0.05)  # 1 s a request
    with running(backend, max_queue=2) as app:
        results: list[httpx.Response] = []

        def one() -> None:
            results.append(httpx.post(f"{app.state.url}/v1/chat/completions", json=chat("hi"), timeout=30))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert set(codes) == {200, 429} and codes.count(200) >= 3, codes
        busy = next(r for r in results if r.status_code == 429)
        assert int(busy.headers["Retry-After"]) >= 1 and busy.json()["error"]["type"] == "rate_limit_exceeded"
        metrics = httpx.get(f"{app.state.url}/metrics").text
        assert f"forge_queue_rejected_total {codes.count(429)}" in metrics
        assert "forge_queue_depth 0" in metrics
        assert 'forge_request_seconds_bucket{method="POST",path="/v1/chat/completions",le="+Inf"} 8' in metrics


def test_port_opens_at_once_ready_503_until_loaded_and_dead_worker_is_unhealthy():
    loaded = threading.Event()
    backend = ScriptedBackend()

    def load() -> ScriptedBackend:
        loaded.wait(20)
        return backend

    with running(backend, load=load) as app:
        url = app.state.url
        assert httpx.get(f"{url}/ready").status_code == 503
        r = httpx.post(f"{url}/v1/chat/completions", json=chat("hi"), timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"]
        loaded.set()
        deadline = time.time() + 5
        while httpx.get(f"{url}/ready").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert httpx.post(f"{url}/v1/chat/completions", json=chat("hi"), timeout=10).status_code == 200
        app.state.worker.stop()  # the generation thread ends
        app.state.worker.threads[0].join(5)
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"


def test_a_model_that_fails_to_load_stops_the_server():
    def load() -> Any:
        raise OSError("no weights here")

    with running(None, load=load) as app:
        app.state.thread.join(10)
        assert not app.state.thread.is_alive() and isinstance(app.state.fatal, OSError)


def test_slow_and_half_open_clients_are_cut_within_seconds():
    with running(ScriptedBackend(), read_timeout_s=1.0) as app:
        port = int(app.state.url.rsplit(":", 1)[1])
        # half a request head, then silence; and a head sent a byte at a time
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        idle = socket.create_connection(("127.0.0.1", port))
        start = time.monotonic()
        half.settimeout(5)
        assert half.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 2.5
        idle.settimeout(5)
        assert idle.recv(100) == b""
        # a body declared and trickled
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        start = time.monotonic()
        slow.settimeout(0.3)
        answer = b""
        while time.monotonic() - start < 5:
            try:
                chunk = slow.recv(1000)
            except TimeoutError:
                slow.sendall(b" ")
                continue
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 2.5
        # the server still answers
        assert httpx.post(f"{app.state.url}/v1/chat/completions", json=chat("hi"), timeout=10).status_code == 200


def test_docs_and_schema_need_the_key():
    with running(ScriptedBackend(), api_key="k3y") as app:
        url = app.state.url
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 401
            assert httpx.get(f"{url}{path}", headers={"X-API-Key": "k3y"}).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200


def test_access_log_drops_query_strings():
    import logging

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", "/v1/models?api_key=secret", "1.1", 200), None)
    DropQueryString().filter(record)
    assert "secret" not in record.getMessage() and "/v1/models" in record.getMessage()


def test_api_key_file_and_flag_checks(tmp_path):
    from forge.cli.serve import serve_settings
    from forge.errors import ForgeError

    key = tmp_path / "key"
    key.write_text("s3cret\n")
    assert serve_settings({"--api-key": None, "--api-key-file": str(key)}).api_key == "s3cret"
    for path, message in [(tmp_path, "not a file"), (tmp_path / "none", "not a file")]:
        with pytest.raises(ForgeError, match=message):
            serve_settings({"--api-key": None, "--api-key-file": str(path)})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ForgeError, match="empty"):
        serve_settings({"--api-key": None, "--api-key-file": str(tmp_path / "empty")})
    with pytest.raises(ForgeError, match="give one"):
        serve_settings({"--api-key": "x", "--api-key-file": str(key)})


def mixed_load_at_64_clients(url: str) -> None:
    """Valid requests (batched together: greedy, streamed and not, each with its own budget) interleaved with bad
    ones: every valid one 200 with exactly what it gets alone, every bad one 4xx."""
    import asyncio

    questions = [f"what is the capital of {c}?" for c in ("france", "spain", "italy", "peru")]
    alone = {}
    for q in questions:
        for n in (3, 7):
            r = httpx.post(f"{url}/v1/chat/completions", json=chat(q, max_tokens=n, temperature=0), timeout=30)
            alone[(q, n)] = r.json()["choices"][0]["message"]["content"]
    bad = [chat("\ud800"), chat("hi", stop=["x"] * 50), chat("hi", seed=2**70), chat("hi", n=3), {"messages": "x"}]

    async def main() -> list[tuple[Any, int, str]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            async def one(i: int) -> tuple[Any, int, str]:
                if i % 4 == 3:
                    body = bad[i % len(bad)]
                    r = await client.post(f"{url}/v1/chat/completions", content=json.dumps(body),
                                          headers={"Content-Type": "application/json"})  # \ud800 escaped
                    return None, r.status_code, r.text
                q, n = questions[i % 4], (3, 7)[i % 2]
                body = chat(q, max_tokens=n, temperature=0, stream=i % 8 == 1)
                r = await client.post(f"{url}/v1/chat/completions", json=body)
                if body["stream"]:
                    events = sse_events(r)
                    assert events[-1] == "[DONE]"
                    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
                else:
                    text = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else r.text
                return (q, n), r.status_code, text

            return await asyncio.gather(*(one(i) for i in range(128)))

    for key, status, text in asyncio.run(main()):
        if key is None:
            assert 400 <= status < 500, text
        else:
            assert status == 200 and text == alone[key], (key, status, text)


def test_real_server_survives_bad_streams_and_stops_on_sigterm(forge_cli, tiny_sft_run):
    """Issue 20's probe: six bad streaming requests, then valid ones, then SIGTERM during a stream."""
    with Server(forge_cli, tiny_sft_run, "--grace-s", "2") as server:
        url = server.url
        bad = [{"prompt": "", "stream": True}, {"prompt": "hi", "stream": True, "seed": 2**70}] * 3
        for body in bad:
            r = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
            assert r.status_code in (200, 422), r.text
            if r.status_code == 200:
                assert sse_events(r)[-1] == "[DONE]"
        r = httpx.post(f"{url}/v1/chat/completions", json=chat("hi", max_tokens=4), timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
        assert httpx.get(f"{url}/health").status_code == 200
        mixed_load_at_64_clients(url)
        body = chat("tell me a story", max_tokens=400, stream=True, temperature=1.0)
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
            next(r.iter_lines())
            start = time.monotonic()
            server.proc.terminate()
            server.proc.wait(timeout=15)
        assert time.monotonic() - start < 10
