"""MLflow tracking. Embedded by default (a sqlite file ``mlflow.db`` in the working directory);
``MLFLOW_TRACKING_URI`` points it anywhere else. mlflow is imported only when a run starts.

Creating a sqlite store runs MLflow's schema migrations; two processes doing that at once corrupt it for good, so
the first connection to a sqlite store is made under an exclusive file lock (:func:`connect`). Everything in forge
that talks to MLflow (runs, ``forge eval``, ``forge registry``) connects through here.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forge.errors import ForgeError

DEFAULT_DB = "mlflow.db"
EXPERIMENT_ENV = "FORGE_EXPERIMENT"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise MLflow store initialisation for a sqlite store (a lock file beside it); no-op for servers."""
    db = _sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with (db.parent / f".{db.name}.lock").open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def connect(uri: str | None = None) -> Any:
    """Point mlflow at ``uri`` (default: :func:`tracking_uri`), create/migrate its store under the store lock, and
    return the ``mlflow`` module. A store that cannot be used is a one-line :class:`ForgeError`."""
    import mlflow

    # mlflow's own logging is chatty (alembic migrations on a new sqlite file); keep the console for forge.
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with store_lock(uri):
            mlflow.tracking.MlflowClient().search_experiments(max_results=1)
    except Exception as exc:  # a bad URI, an unreachable server, a store from an incompatible MLflow
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForgeError(f"MLflow tracking to {uri} failed: {first} (set MLFLOW_TRACKING_URI, or pass "
                         "--no-tracking)") from None
    return mlflow


class Tracker:
    """One MLflow run per forge run; a resumed forge run continues its MLflow run."""

    def __init__(self, experiment: str, run_name: str, run_id: str | None = None) -> None:
        self.uri = tracking_uri()
        mlflow = connect(self.uri)
        self._mlflow = mlflow
        if run_id is None:
            mlflow.set_experiment(os.environ.get(EXPERIMENT_ENV, experiment))
            self.run = mlflow.start_run(run_name=run_name)
        else:
            self.run = mlflow.start_run(run_id=run_id)
        self.run_id: str = self.run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        flat = {k: str(v)[:500] for k, v in _flatten(params).items()}
        existing = self._mlflow.get_run(self.run_id).data.params
        self._mlflow.log_params({k: v for k, v in flat.items() if k not in existing})

    def log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        self._mlflow.log_metrics(metrics, step=step)

    def log_artifact(self, path: Path) -> None:
        self._mlflow.log_artifact(str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)

    def log_dataset(self, source: str, sha256: str | None, fields: list[str], context: str = "training",
                    tags: dict[str, str] | None = None) -> None:
        """A dataset in MLflow's dataset tracking (the run page's Datasets): source (local file or Hub name),
        digest (the sha256's first 32 hex digits; the whole one in the ``forge.sha256`` tag) and schema (fields)."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.types import ColSpec, Schema

        path = Path(source)
        if path.is_file():
            from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

            dataset_source: Any = LocalArtifactDatasetSource(str(path.resolve()))
        else:
            from mlflow.data.sources import HuggingFaceDatasetSource  # type: ignore[attr-defined]

            dataset_source = HuggingFaceDatasetSource(path=source, split="train")
        schema = Schema([ColSpec("string", name) for name in fields]) if fields else None
        dataset = MetaDataset(dataset_source,  # type: ignore[abstract]  # profile is optional at runtime
                              name=path.name if path.is_file() else source,
                              digest=(sha256 or "")[:32] or None, schema=schema)
        all_tags = {**(tags or {}), **({"forge.sha256": sha256} if sha256 else {})}
        self._mlflow.log_input(dataset, context=context, tags=all_tags)

    def end(self, status: str) -> None:
        self._mlflow.end_run(status=status)

