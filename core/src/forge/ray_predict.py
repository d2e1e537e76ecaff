"""``forge predict --engine ray``: the same predictor, run by a pool of Ray actors through Ray Data ``map_batches``.

The driver reads, chunks, sorts and batches rows exactly as the single-process path does (:mod:`forge.batch`);
each chunk's batches become a Ray dataset of one item per batch, mapped by an actor pool where every actor loads the
artifact once (``forge.load_predictor``) and answers whole batches with :func:`forge.batch.predict_rows` (a bad row
costs the same as locally). Answers come back with their batch number and are put in order, so the output file is
identical to the single-process one, row for row. Chunks stay the resume unit.

Ray is imported here only, when asked. ``--address`` joins a running cluster (every node needs this forge and the
artifact's path); without it a local Ray instance is started, sized to the machine (or ``num_cpus``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

from forge.errors import ForgeError


class _Worker:
    """One actor of the pool: the artifact's predictor, loaded once."""

    def __init__(self, artifact: str, options: dict[str, Any]) -> None:
        from forge.cli.chat import open_reference
        from forge.predictors import load_predictor

        self._loaded = load_predictor(open_reference(artifact), options)
        self._predictor = self._loaded.__enter__()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from forge.batch import predict_rows

        answers = [pickle.dumps(predict_rows(self._predictor, pickle.loads(rows))) for rows in batch["rows"]]
        return {"index": list(batch["index"]), "answers": answers}

    def __del__(self) -> None:  # the predictor's own clean-up (sessions, temporary files)
        with contextlib.suppress(Exception):
            self._loaded.__exit__(None, None, None)


class RayEngine:
    """Answers a chunk's batches on Ray: ``predict_batches(batches) -> [answers per batch]`` in batch order."""

    def __init__(self, artifact: Path | str, options: dict[str, Any], address: str | None = None,
                 workers: int | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ForgeError("--engine ray: Ray is not installed; pip install 'forge-core[ray]'") from None
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
            except ConnectionError as exc:
                raise ForgeError(f"--address {address}: could not join the Ray cluster: {exc}") from None
            self._started = True
        else:
            self._started = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cpus)
        self.artifact = str(Path(artifact).resolve()) if Path(artifact).exists() else str(artifact)
        self.options = options
        self.ray = ray

    def describe(self) -> str:
        resources = self.ray.cluster_resources()
        return f"Ray {self.ray.__version__}: {self.workers} actors on {int(resources.get('CPU', 0))} CPUs"

    def predict_batches(self, batches: list[list[tuple[int, dict[str, Any]]]]) -> list[Any]:
        if not batches:
            return []
        import ray.data

        items = [{"index": i, "rows": pickle.dumps(batch)} for i, batch in enumerate(batches)]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), self.workers * 4))
        mapped = ds.map_batches(_Worker, fn_constructor_kwargs={"artifact": self.artifact, "options": self.options},
                                batch_size=1, concurrency=min(self.workers, len(items)), num_cpus=1,
                                batch_format="numpy")
        out: list[Any] = [None] * len(batches)
        for row in mapped.iter_rows():
            out[int(row["index"])] = pickle.loads(row["answers"])
        return out

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
