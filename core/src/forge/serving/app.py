"""The FastAPI app every forge server starts from.

- ``/health`` (process is up) and ``/ready`` (model loaded), never behind the API key;
- optional API key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared in constant time → 401;
- request bodies larger than ``max_body_bytes`` → 413 (counted as they arrive, so chunked uploads too);
- requests slower than ``timeout_s`` → 504; invalid requests → 422 naming the field;
- ``/metrics``: request counts and latencies per route, Prometheus text format;
- ``/``: the playground page fitted to the server (:mod:`forge.serving.playground`), open like ``/health``.
Errors use one JSON shape: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forge.serving.settings import ServeSettings

OPEN_PATHS = {"/", "/health", "/ready", "/docs", "/openapi.json"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               413: "request_too_large", 422: "invalid_request_error", 503: "service_unavailable",
               504: "timeout"}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param,
                      "code": status}}


def error_response(status: int, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


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

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
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


class RequestMetrics:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.started = time.time()

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        self.counts[(method, path, status)] += 1
        self.seconds[(method, path)] += seconds

    def render(self) -> str:
        lines = ["# TYPE forge_requests_total counter"]
        for (method, path, status), n in sorted(self.counts.items()):
            lines.append(f'forge_requests_total{{method="{method}",path="{path}",status="{status}"}} {n}')
        lines.append("# TYPE forge_request_seconds_sum counter")
        for (method, path), s in sorted(self.seconds.items()):
            lines.append(f'forge_request_seconds_sum{{method="{method}",path="{path}"}} {s:.6f}')
        lines.append(f"forge_uptime_seconds {time.time() - self.started:.1f}")
        return "\n".join(lines) + "\n"


def create_base_app(title: str, settings: ServeSettings, ready: Callable[[], bool] = lambda: True,
                    lifespan: Any = None, page: str | None = None) -> FastAPI:
    """A FastAPI app with forge's health, readiness, auth, limits, timeouts, metrics and error shape.

    ``page`` names the playground page ``GET /`` shows (``chat``, ``classify``, ``forecast``); left out, the page
    the app's routes call for, if any."""
    app = FastAPI(title=title, lifespan=lifespan)
    metrics = RequestMetrics()
    app.state.metrics = metrics
    app.state.settings = settings

    @app.middleware("http")
    async def time_and_limit(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        try:
            response = await asyncio.wait_for(call_next(request), timeout=settings.timeout_s)
        except asyncio.TimeoutError:
            response = error_response(504, f"request took longer than {settings.timeout_s} s")
        route = request.scope.get("route")
        metrics.observe(request.method, getattr(route, "path", "unmatched"), response.status_code,
                        time.perf_counter() - start)
        return response

    app.add_middleware(GuardMiddleware, settings=settings)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return error_response(422, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

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
