"""What an evaluator receives and returns (the contract behind ``forge eval ARTIFACT --suite NAME``).

An evaluator is registered with ``register(forge.Evaluator(name, accepts, evaluate, summary))`` and called as
``evaluate(artifact: forge.Artifact, request: forge.EvalRequest) -> forge.EvalResult``::

    def evaluate(artifact, request):
        rows = read_my_data(request.data)
        scores = [score(row) for row in request.progress(rows, desc="scoring")]
        return forge.EvalResult(
            metrics={"accuracy": sum(scores) / len(scores)},
            per_example={"accuracy": scores},          # the core adds a seeded 95% bootstrap interval
            records=[{"input": r["text"], "expected": r["label"], "output": ..., "score": s} ...],
        )

Metrics that are a mean over examples give their per-example values in ``per_example``; the core computes their
confidence intervals. Other metrics (macro-F1...) may give an interval themselves in ``intervals`` (use
:func:`bootstrap_interval` with a statistic over resampled indices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _no_progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "") -> Any:
    return iterable


@dataclass
class EvalRequest:
    """One evaluation: the data file (``--data``, may be ``None`` when the suite has a default), the options
    (``--set key=value``), where to write plots (``output_dir``), the seed, and the run-time hooks."""

    data: Path | None
    options: dict[str, Any] = field(default_factory=dict)
    output_dir: Path = Path(".")
    seed: int = 0
    log: Callable[[str], None] = print
    progress: Callable[..., Any] = _no_progress
    should_stop: Callable[[], bool] = lambda: False


@dataclass
class EvalResult:
    """Metrics (name → value), per-example records (input, expected, output, score...) and plots (PNG paths under
    ``request.output_dir``). ``per_example`` maps a metric to the values it is the mean of; ``intervals`` maps a
    metric to its (low, high) 95% interval when the evaluator computed one itself."""

    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    per_example: dict[str, Sequence[float]] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def bootstrap_interval(
    n: int, statistic: Callable[[Any], float], seed: int = 0, resamples: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval of ``statistic(indices)`` over ``n`` examples resampled with replacement."""
    import numpy as np

    if n < 2:
        value = statistic(np.arange(n))
        return value, value
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=float)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: Sequence[float], seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    """95% bootstrap interval of the mean of ``values`` (seeded: the same values give the same interval)."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float(array.mean()) if len(array) else float("nan"), float(array.mean()) if len(array) else float("nan")
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, len(array), size=(resamples, len(array)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


EVALS = "evals"


def read_results(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(directory, eval.json) of every complete result directly under ``root``, oldest first. Directories being
    written (staged, named ``.NAME.*``) and unreadable files are skipped."""
    import json

    found: list[tuple[Path, dict[str, Any]]] = []
    if not Path(root).is_dir():
        return found
    for child in Path(root).iterdir():
        file = child / "eval.json"
        if child.name.startswith(".") or not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append((child, data))
    found.sort(key=lambda item: (str(item[1].get("finished") or ""), item[0].name))
    return found


def stored_results(artifact_path: Path | str) -> list[dict[str, Any]]:
    """The complete ``forge eval`` results kept with an artifact (``ARTIFACT/evals/*/eval.json``), oldest first.
    A run directory stands for its artifact; a directory of results (``./evals/NAME-vVERSION``) is read as is."""
    import json

    path = Path(artifact_path)
    manifest = path / "forge.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and data.get("type") == "run" and data.get("artifact"):
            path = path / str(data["artifact"].get("path", "artifact"))
        return [result for _, result in read_results(path / EVALS)]
    if (path / EVALS).is_dir():
        return [result for _, result in read_results(path / EVALS)]
    return [result for _, result in read_results(path)]
