"""The run record: what a run directory says about its run, written by rank 0 only.

    runs/sft-20261123-101500/
      config.yaml      the resolved config (with the recipe and requested provider): what --resume re-reads
      forge.json       the run manifest: status running → completed | failed | interrupted, data hashes, plugin
                       versions, provider, metrics, artifact; rewritten atomically on every change
      run.log          forge's own lines;  metrics.jsonl  every logged metric;  metrics.png  their plot
      checkpoints/     checkpoint-N directories (complete once their marker file exists)
      artifact/        the result, with its own forge.json
      .lock            held (flock) by the process running the run: a second --resume is refused while it lives

The lock is what says a run is alive: a crashed run's lock is released by the kernel, so a pid that now belongs
to another process never blocks ``--resume``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

import forge
from forge.artifacts import (
    MANIFEST,
    SCHEMA,
    ArtifactResult,
    read_manifest,
    sha256_path,
    write_artifact_manifest,
    write_json_atomic,
)
from forge.errors import ForgeError
from forge.plugins import PluginSet
from forge.run.context import latest_checkpoint
from forge.run.plan import Plan
from forge.run.ranks import launch_facts

LOCK = ".lock"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunRecord:
    """A run directory's manifest and lock, held by the process that runs it (rank 0)."""

    def __init__(self, run_dir: Path, data: dict[str, Any], lock: IO[str]) -> None:
        self.run_dir = run_dir
        self.path = run_dir / MANIFEST
        self.data = data
        self._lock = lock

    # -- opening ------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, plan: Plan, plugins: PluginSet) -> RunRecord:
        """A new run: the directory, its lock, ``config.yaml`` and a ``running`` manifest."""
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(plan.run_dir)
        (plan.run_dir / "config.yaml").write_text(plan.config_yaml(), encoding="utf-8")
        record = cls(plan.run_dir, {
            "schema": SCHEMA,
            "type": "run",
            "status": "running",
            "recipe": plan.recipe.qualified,
            "recipe_plugin": plan.recipe.plugin,
            "forge_version": forge.__version__,
            "plugins": plugins.versions(),
            "config": plan.config.model_dump(mode="json"),
            "data": data_files(plan.config),
            "provider": None,
            "metrics": {},
            "artifact": None,
            "started_at": now(),
            "resumes": [],
        }, lock)
        record._running(plugins)
        return record

    @classmethod
    def reopen(cls, plan: Plan, plugins: PluginSet) -> tuple[RunRecord, tuple[Path, int] | None]:
        """An unfinished run to continue: take its lock (refused while another process holds it), find the last
        complete checkpoint, drop the metrics logged after it (those steps run again)."""
        lock = _lock(plan.run_dir)
        record = cls(plan.run_dir, read_manifest(plan.run_dir), lock)
        if record.data.get("status") == "completed":
            record.release()
            raise ForgeError(f"--resume {plan.run_dir}: run already completed")
        checkpoint = latest_checkpoint(plan.run_dir / "checkpoints")
        _truncate_metrics(plan.run_dir / "metrics.jsonl", checkpoint[1] if checkpoint else 0)
        record.data.setdefault("resumes", []).append(
            {"at": now(), "from_checkpoint": str(checkpoint[0].relative_to(plan.run_dir)) if checkpoint else None}
        )
        record._running(plugins)
        return record, checkpoint

    def _running(self, plugins: PluginSet) -> None:
        self.update(status="running", pid=os.getpid(), host=socket.gethostname(), error=None,
                    plugins=plugins.versions(), world_size=int(os.environ.get("WORLD_SIZE", "1")),
                    distributed=launch_facts())

    # -- writing ------------------------------------------------------------------------------------------------
    def update(self, **facts: Any) -> None:
        """Add facts to the manifest and rewrite it atomically."""
        self.data.update(facts)
        self.data["updated_at"] = now()
        write_json_atomic(self.path, self.data)

    def write_artifact(self, artifact_dir: Path, result: ArtifactResult, metrics: dict[str, float]) -> None:
        """The artifact's own manifest (how it was made), and where the run manifest finds it."""
        made_by = {
            "recipe": self.data["recipe"],
            "provider": self.data.get("provider"),
            "forge_version": forge.__version__,
            "plugins": self.data["plugins"],
            "config": self.data["config"],
            "data": self.data["data"],
            "run_dir": "..",
            "parent": None,
        }
        written = write_artifact_manifest(artifact_dir, ArtifactResult(result.kind, metrics, result.extra), made_by)
        self.data["metrics"] = metrics
        self.data["artifact"] = {"kind": result.kind, "path": artifact_dir.relative_to(self.run_dir).as_posix(),
                                 "files": written["files"]}

    def finish(self, status: str, metrics: dict[str, float], error: str | None = None) -> Path | None:
        """The final status, with the metrics plot; returns the plot (or None)."""
        plot = None
        try:
            from forge.run.plots import plot_metrics

            plot = plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.png", title=self.run_dir.name)
        except Exception as exc:  # a plot is a convenience; never lose the run's status over it
            error_note = f"could not plot metrics: {type(exc).__name__}: {exc}"
            self.data.setdefault("warnings", []).append(error_note)
        self.update(status=status, finished_at=now(), error=error, pid=None, plots=[plot.name] if plot else [],
                    metrics={**metrics, **self.data.get("metrics", {})})
        return plot

    def release(self) -> None:
        """Give up the run directory's lock (the process exiting does the same)."""
        if not self._lock.closed:
            self._lock.close()


def _lock(run_dir: Path) -> IO[str]:
    """Hold ``run_dir/.lock`` exclusively for as long as this process lives, or refuse in one line."""
    handle = (run_dir / LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise ForgeError(f"{run_dir}: run is in use by {owner}; wait for it to end (or stop it) first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def data_files(config: Any) -> list[dict[str, Any]]:
    """Hash every local data file the config names (fields called ``data``, ``*_data`` or ``*_file``)."""
    found = []
    for key, value in config.model_dump().items():
        if not (key == "data" or key.endswith("_data") or key.endswith("_file")) or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:  # a mixture: one entry per source
            name = item.get("path") if isinstance(item, dict) else item
            path = Path(str(name))
            if path.is_file():
                found.append({"field": key, "path": str(path), "sha256": sha256_path(path)})
            elif path.exists() or path.is_symlink():  # a FIFO, a device, a directory: the recipe refuses it
                found.append({"field": key, "path": str(path), "sha256": None})
            else:
                found.append({"field": key, "hub": str(name)})
    return found


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint we resume from: those steps run again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step") is None or row["step"] <= step:
            kept.append(line)
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


def append_eval(run_dir: Path, entry: dict[str, Any], timeout_s: float = 60.0) -> None:
    """List an eval in a finished run's manifest (``evals``), under the run's lock (waiting up to ``timeout_s`` for
    a process that holds it) and rewritten atomically."""
    handle = (run_dir / LOCK).open("a+", encoding="utf-8")
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise ForgeError(f"{run_dir}: run is in use by another process") from None
                time.sleep(0.2)
        data = read_manifest(run_dir)
        data.setdefault("evals", []).append(entry)
        data["updated_at"] = now()
        write_json_atomic(run_dir / MANIFEST, data)
    finally:
        handle.close()
