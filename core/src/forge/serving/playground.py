"""The playground: ``GET /`` on every forge server answers one small self-contained HTML page (inline CSS and JS, no
CDN, works offline) fitted to what the server serves:

- ``chat``: a chat box streaming replies from ``POST /v1/chat/completions`` (server-sent events);
- ``classify``: a text box and one bar per label from ``POST /predict``;
- ``forecast``: a series chart (inline SVG) of the history typed in and ``POST /forecast``'s answer with its widest
  interval.

A server declares its page with ``create_base_app(..., page="classify")``; a server that declares none gets the page
its routes call for (see :func:`page_for_routes`), and no page (404) when none fits. The page sends the API key typed
into it as ``Authorization: Bearer KEY``; the page itself is open, like ``/health`` (it holds no data).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

PAGES = ("chat", "classify", "forecast")
# the route each page calls: a server without a declared page gets the page whose route it has
PAGE_ROUTES = {"chat": "/v1/chat/completions", "classify": "/predict", "forecast": "/forecast"}


def page_for_routes(paths: Iterable[str]) -> str | None:
    """The page a server with these route paths can drive, or None."""
    present = set(paths)
    return next((page for page, route in PAGE_ROUTES.items() if route in present), None)


@lru_cache(maxsize=1)
def _template() -> str:
    return resources.files("forge.serving").joinpath("static/playground.html").read_text(encoding="utf-8")


def playground_html(page: str, title: str, model: str | None = None) -> str:
    """The page for ``page`` (one of :data:`PAGES`), titled ``title``."""
    if page not in PAGES:
        raise ValueError(f"unknown playground page {page!r}; pages: {', '.join(PAGES)}")
    config = json.dumps({"page": page, "title": title, "model": model})
    # inside <script>: "</" would end the element early, so it is escaped (JSON allows "\/")
    return _template().replace("__FORGE_CONFIG__", config.replace("</", "<\\/"))
