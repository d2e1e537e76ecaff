"""MLflow tracking. Embedded by default (a sqlite file ``mlflow.db`` in the working directory);
``MLFLOW_TRACKING_URI`` points it anywhere else. mlflow is imported only when a run starts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

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


class Tracker:
    """One MLflow run per forge run; a resumed forge run continues its MLflow run."""

    def __init__(self, experiment: str, run_name: str, run_id: str | None = None) -> None:
        import mlflow

        # mlflow's own logging is chatty (alembic migrations on a new sqlite file); keep the console for forge.
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)

        self._mlflow = mlflow
        self.uri = tracking_uri()
        mlflow.set_tracking_uri(self.uri)
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

    def end(self, status: str) -> None:
        self._mlflow.end_run(status=status)
