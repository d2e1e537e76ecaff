"""Predictors: an artifact loaded in-process, answering ``predict(rows) -> outputs`` without a server.

A server contribution may carry ``predict="module:function"``: ``function(artifact, options) -> Predictor``. The
evaluators (classification suite, backtest...) and later ``forge predict`` go through :func:`load_predictor`, so a
torch classifier and its ONNX export share one suite::

    with forge.load_predictor(forge.Artifact.load(Path("runs/classify-1"))) as predictor:
        predictor.predict([{"text": "a lovely film"}])
        # → [{"label": "positive", "confidence": 0.97, "scores": {"negative": 0.03, "positive": 0.97}}]

Row shapes, by kind: classifiers ``{"text"}`` → ``{"label", "confidence", "scores"}``; causal LMs ``{"prompt"}`` or
``{"messages"}`` → ``{"text", "tokens", "stopped"}`` (options: ``max_new_tokens``, ``batch_size``); forecasters the
``/forecast`` request body (``{"id"?, "history"?, "horizon"?, "level"?}``) → its response body.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from forge.errors import ForgeError

if TYPE_CHECKING:
    from forge.artifacts import Artifact


class Predictor:
    """Base class of what ``Server.predict`` returns. Subclasses implement :meth:`predict` (a batch of rows in, one
    output per row, same order) and may release resources in :meth:`close`. Usable as a context manager."""

    kind: str = ""

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the predictor holds (sessions, threads). Safe to call twice."""

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def load_predictor(artifact: Artifact, options: dict[str, Any] | None = None) -> Predictor:
    """The predictor of the first installed server that accepts ``artifact.kind`` and can predict in-process."""
    from forge.plugins import get_plugins

    servers = [r.item for r in get_plugins().all("servers") if artifact.kind in r.item.accepts]
    predicting = [s for s in servers if getattr(s, "predict", None) is not None]
    if not predicting:
        known = sorted({k for r in get_plugins().all("servers") if getattr(r.item, "predict", None) is not None
                        for k in r.item.accepts})
        why = "no installed server predicts in-process" if servers else "no installed plugin serves it"
        raise ForgeError(f"{artifact.path}: cannot load a {artifact.kind} artifact for prediction ({why}; "
                         f"predictors take: {', '.join(known) or 'none'})")
    predictor: Predictor = predicting[0].load_predictor(artifact, dict(options or {}))
    return predictor
