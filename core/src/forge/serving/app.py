"""The FastAPI app every forge server starts from.

- ``/health`` (process is up) and ``/ready`` (model loaded), never behind the API key;
- optional API key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared in constant time → 401;
- request bodies larger than ``max_body_bytes`` → 413 (counted as they arrive, so chunked uploads too);
- a body that does not arrive within ``read_timeout_s`` → 408 (a header that does not: the connection is closed,
  :class:`GuardedH11Protocol`);
- requests slower than ``timeout_s`` → 504; invalid requests → 422 naming the field (strings that cannot be encoded,
  such as lone surrogates, too); any other failure → a JSON 500, never a plain-text page;
- ``/metrics``: request counts and latency histograms per route, plus whatever gauges and counters a server adds
  (queue depth, rejections), Prometheus text format;
- ``/``: the playground page fitted to the server (:mod:`forge.serving.playground`), open like ``/health``.
Errors use one JSON shape: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forge.serving.settings import ServeSettings

OPEN_PATHS = {"/", "/health", "/ready"}  # /docs, /redoc and /openapi.json need the key when there is one
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               408: "timeout", 413: "request_too_large", 422: "invalid_request_error",
               429: "rate_limit_exceeded", 500: "server_error", 503: "service_unavailable", 504: "timeout"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def encodable(value: str) -> str:
    """Strings a model can take: JSON may carry lone surrogates (``"\\ud800"``), which no tokenizer encodes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"contains a character that cannot be encoded as UTF-8 (a lone surrogate) at position "
                         f"{error.start}") from None
    return value


Text = Annotated[str, AfterValidator(encodable)]
"""``str`` for request models: a lone surrogate is a 422 naming the field, not a 500 in the tokenizer."""


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param,
                      "code": status}}


def error_response(status: int, message: str, param: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(StarletteHTTPException):
    """An HTTP exception so that the route's body parsing passes it on (FastAPI turns other errors into 400)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds} s", headers={"Connection": "close"})


class QueueFull(Exception):
    """Raised by a server's queue when it is full: answered as 429 with ``Retry-After``."""

    def __init__(self, retry_after_s: float = 1.0) -> None:
        super().__init__("server busy")
        self.retry_after_s = retry_after_s


def busy_response(retry_after_s: float) -> JSONResponse:
    seconds = max(1, int(retry_after_s + 0.999))
    return error_response(429, f"server busy: too many requests waiting; retry after {seconds} s",
                          headers={"Retry-After": str(seconds)})


def not_ready_response() -> JSONResponse:
    return error_response(503, "the model is still loading", headers={"Retry-After": "2"})


class GuardMiddleware:
    """API key and body size limit, as plain ASGI so no body is buffered before the check."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.settings.api_key and scope["path"] not in OPEN_PATHS:
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.settings.api_key.encode()):
                response = error_response(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(413, f"request body over {limit} bytes")(scope, receive, send)
            return
        seen = 0
        started = False
        body_done = False
        loop = asyncio.get_running_loop()
        body_deadline = loop.time() + self.settings.read_timeout_s

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:
                return await receive()
            try:  # the whole body within read_timeout_s: a client trickling bytes holds nothing for long
                message = await asyncio.wait_for(receive(), max(0.0, body_deadline - loop.time()))
            except asyncio.TimeoutError:
                raise _BodyTooSlow(self.settings.read_timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await error_response(413, f"request body over {limit} bytes")(scope, receive, send)
        except _BodyTooSlow as error:  # raised where nothing turned it into a response
            if not started:
                await error_response(408, str(error.detail), headers=error.headers)(scope, receive, send)


class TimingMiddleware:
    """Requests whose response has not started after ``timeout_s`` → 504 (a stream, once started, is bounded by its
    generation's own deadline); every request observed in the metrics. Plain ASGI: no task group around ``receive``,
    so the guard's 408 reaches the route as an HTTP error."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: RequestMetrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begun = time.perf_counter()
        status = 500
        response_started = asyncio.Event()

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        waiter = asyncio.ensure_future(response_started.wait())
        try:
            done, _ = await asyncio.wait({task, waiter}, timeout=self.settings.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if not response_started.is_set():
                    status = 504
                    await error_response(504, f"request took longer than {self.settings.timeout_s} s")(
                        scope, receive, send)
            else:
                await task
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
            route = scope.get("route")
            self.metrics.observe(scope.get("method", "?"), getattr(route, "path", "unmatched"), status,
                                 time.perf_counter() - begun)


class RequestMetrics:
    """Request counts and latency histograms per route, and the gauges/counters a server registers."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.gauges: dict[str, tuple[str, str, Callable[[], float]]] = {}
        self.started = time.time()

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        self.counts[(method, path, status)] += 1
        self.seconds[(method, path)] += seconds
        counts = self.buckets.setdefault((method, path), [0] * len(LATENCY_BUCKETS))
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                counts[i] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float], kind: str = "gauge") -> None:
        """Export ``read()`` as ``name`` (``kind`` gauge or counter) on every scrape."""
        self.gauges[name] = (kind, help_text, read)

    def render(self) -> str:
        lines = ["# HELP forge_requests_total requests answered, by route and status",
                 "# TYPE forge_requests_total counter"]
        for (method, path, status), n in sorted(self.counts.items()):
            lines.append(f'forge_requests_total{{method="{method}",path="{path}",status="{status}"}} {n}')
        lines += ["# HELP forge_request_seconds request latency, by route", "# TYPE forge_request_seconds histogram"]
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for (method, path, _), n in self.counts.items():
            totals[(method, path)] += n
        for (method, path), counts in sorted(self.buckets.items()):
            labels = f'method="{method}",path="{path}"'
            for bound, n in zip(LATENCY_BUCKETS, counts, strict=True):
                lines.append(f'forge_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
            lines.append(f'forge_request_seconds_bucket{{{labels},le="+Inf"}} {totals[(method, path)]}')
            lines.append(f"forge_request_seconds_sum{{{labels}}} {self.seconds[(method, path)]:.6f}")
            lines.append(f"forge_request_seconds_count{{{labels}}} {totals[(method, path)]}")
        for name, (kind, help_text, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {float(read()):g}"]
        lines += ["# TYPE forge_uptime_seconds gauge", f"forge_uptime_seconds {time.time() - self.started:.1f}"]
        return "\n".join(lines) + "\n"


def create_base_app(title: str, settings: ServeSettings, ready: Callable[[], bool] = lambda: True,
                    lifespan: Any = None, page: str | None = None,
                    healthy: Callable[[], str | None] = lambda: None) -> FastAPI:
    """A FastAPI app with forge's health, readiness, auth, limits, timeouts, metrics and error shape.

    ``page`` names the playground page ``GET /`` shows (``chat``, ``classify``, ``forecast``); left out, the page
    the app's routes call for, if any. ``healthy()`` returns None, or what is wrong (``/health`` then answers 503
    with it: a dead generation worker, a model that failed to load)."""
    app = FastAPI(title=title, lifespan=lifespan)
    metrics = RequestMetrics()
    app.state.metrics = metrics
    app.state.settings = settings

    app.add_middleware(TimingMiddleware, settings=settings, metrics=metrics)
    app.add_middleware(GuardMiddleware, settings=settings)

    @app.exception_handler(QueueFull)
    async def busy(request: Request, exc: QueueFull) -> JSONResponse:
        return busy_response(exc.retry_after_s)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(exc).__name__}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return error_response(422, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.get("/health")
    async def health() -> JSONResponse:
        problem = healthy()
        if problem is not None:
            return JSONResponse({"status": "unhealthy", "problem": problem}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def readiness() -> JSONResponse:
        ok = ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(metrics.render())

    from forge.serving.playground import page_for_routes, playground_html

    @app.get("/", include_in_schema=False)
    async def playground() -> HTMLResponse:
        chosen = page or page_for_routes(getattr(route, "path", "") for route in app.routes)
        if chosen is None:
            return error_response(404, "this server has no playground page")  # type: ignore[return-value]
        return HTMLResponse(playground_html(chosen, title), headers={"Cache-Control": "no-store"})

    return app
