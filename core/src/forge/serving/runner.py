"""Running a forge app under uvicorn with the limits operators expect: a request's headers must arrive within
``read_timeout_s`` (a half-sent request is cut, :class:`GuardedH11Protocol`; the body has the same bound in
:class:`forge.serving.app.GuardMiddleware`), idle keep-alive connections close after ``keep_alive_s``, SIGTERM waits
at most ``grace_s`` for requests in flight, and the access log leaves out query strings (a key or a prompt put into
a URL stays out of the logs)."""

from __future__ import annotations

import logging
from typing import Any

from forge.serving.settings import ServeSettings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() in LOOPBACK or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server reachable beyond this machine with no key (None when there is nothing to say)."""
    if api_key or is_loopback(host):
        return None
    return (f"warning: serving on {host} without an API key: anyone who can reach this port can use the model; "
            "set FORGE_API_KEY or --api-key-file")


class DropQueryString(logging.Filter):
    """uvicorn's access record is ``(client, method, path_with_query, http_version, status)``: cut at ``?``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def guarded_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request head has not fully arrived ``header_timeout_s``
    after its first byte (or after the connection opened): uvicorn itself waits forever for the rest of a head."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer: Any = None

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:
                self._arm()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def uvicorn_config(app: Any, settings: ServeSettings, **kwargs: Any) -> Any:
    import uvicorn

    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": "info",
                               "http": guarded_protocol(settings.read_timeout_s),
                               "timeout_keep_alive": settings.keep_alive_s,
                               "timeout_graceful_shutdown": settings.grace_s, "lifespan": "on"}
    options.update(kwargs)
    if "uds" in options:
        options.pop("host")
        options.pop("port")
    config = uvicorn.Config(app, **options)
    logging.getLogger("uvicorn.access").addFilter(DropQueryString())
    return config


def serve(app: Any, settings: ServeSettings) -> None:
    """Run ``app`` until SIGTERM/Ctrl-C; a fatal error the app recorded while starting (``app.state.fatal``, e.g.
    the model failed to load in the background) stops the server and is raised here."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, settings))
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    server.run()
    fatal = getattr(app.state, "fatal", None)
    if fatal is not None:
        raise fatal
