"""``forge run``: the lifecycle of a run — plan, record, track, train with signal handling, finish.

    plan  (run/plan.py)    config → validated Plan: recipe, config, provider choice, run directory; writes nothing
    record (run/record.py) the run directory: config.yaml, forge.json, lock, metrics truncation, artifact manifest
    track (tracking.py)    the run's MLflow run
    here                   rank roles, Ctrl-C/SIGTERM, exceptions → status and exit code

A run that crashed or was interrupted continues with ``forge run --resume RUN_DIR`` from its last complete
checkpoint. On a multi-process run (torchrun) only rank 0 writes the run directory and tracks; the other ranks
(followers) plan the same run, wait for rank 0's manifest, and train.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.artifacts import MANIFEST, ArtifactResult
from forge.console import quiet_libraries
from forge.errors import ForgeError, RunInterrupted
from forge.plugins import PluginSet, get_plugins
from forge.run.context import RunContext, latest_checkpoint
from forge.run.plan import Plan, RunOptions, plan_run
from forge.run.ranks import gather, rank
from forge.run.record import RunRecord

EXIT_INTERRUPTED = 130
FOLLOWER_WAIT_S = 120

__all__ = ["EXIT_INTERRUPTED", "RunOptions", "RunOutcome", "execute"]


@dataclass
class RunOutcome:
    status: str
    run_dir: Path | None
    exit_code: int
    manifest: dict[str, Any] = field(default_factory=dict)


def execute(options: RunOptions, plugins: PluginSet | None = None) -> RunOutcome:
    """Run (or resume) a recipe end to end and return how it ended."""
    plugins = plugins or get_plugins()
    quiet_libraries()
    if rank() != 0:
        return _follow(options, plugins)
    plan = plan_run(options, plugins)
    if options.dry_run:
        dry_run(plan)
        return RunOutcome("dry-run", None, 0)
    with StopRequests() as stop:  # from here on, Ctrl-C/SIGTERM end the run as "interrupted", in every phase
        checkpoint = None
        if plan.resuming:
            record, checkpoint = RunRecord.reopen(plan, plugins)
        else:
            record = RunRecord.create(plan, plugins)
        ctx = _context(plan, checkpoint, record=record)
        stop.attach(ctx)
        try:
            tracker = _start_tracking(record, plan) if options.tracking else None
            ctx.tracker = tracker
            resumed = ""
            if plan.resuming:
                resumed = f" · resuming from {checkpoint[0].name}" if checkpoint else " · resuming from scratch"
            ctx.log(f"run {plan.run_dir} · recipe {plan.recipe.qualified}{resumed}"
                    + (f" · tracking {tracker.uri} run {tracker.run_id}" if tracker else ""))
        except KeyboardInterrupt:
            ctx.should_stop = True
            tracker = None
        try:
            return _train(plan, ctx, record, tracker)
        finally:
            record.release()


def dry_run(plan: Plan) -> None:
    """``--dry-run``: print the resolved plan (stdout), then read and check the data as the run would (the
    recipe's ``check``; lines on stderr). Bad data raises the run's own DataError (exit 2)."""
    sys.stdout.write(plan.describe())
    sys.stdout.flush()
    quiet_libraries()

    def log(line: str) -> None:
        print(f"[forge] {line}", file=sys.stderr, flush=True)

    plan.recipe.item.check_data(plan.config, log)


def _start_tracking(record: RunRecord, plan: Plan) -> Any:
    """The run's MLflow run (a resumed run continues its own); a store that cannot be used marks the run failed and
    is a one-line error."""
    from forge.tracking import Tracker

    previous = (record.data.get("mlflow") or {}).get("run_id") if plan.resuming else None
    try:
        tracker = Tracker(experiment="forge", run_name=plan.run_dir.name, run_id=previous)
    except ForgeError as exc:
        record.finish("failed", {}, error=str(exc))
        record.release()
        raise
    record.update(mlflow={"tracking_uri": tracker.uri, "run_id": tracker.run_id})
    if not plan.resuming:
        tracker.log_params({"recipe": plan.recipe.qualified, **plan.config.model_dump(mode="json")})
        tracker.set_tags({"forge.recipe": plan.recipe.qualified, "forge.run_dir": str(plan.run_dir.resolve())})
    return tracker


def _follow(options: RunOptions, plugins: PluginSet) -> RunOutcome:
    """Ranks > 0: the same plan as rank 0, no writes; wait for rank 0's manifest, then train."""
    plan = plan_run(options, plugins, follower=True)
    deadline = time.time() + FOLLOWER_WAIT_S
    while not (plan.run_dir / MANIFEST).exists() and time.time() < deadline:
        time.sleep(0.1)
    checkpoint = latest_checkpoint(plan.run_dir / "checkpoints") if plan.resuming else None
    ctx = _context(plan, checkpoint, is_main=False)
    with StopRequests() as stop:
        stop.attach(ctx)
        try:
            plan.recipe.item.run(ctx, plan.config)
            if not ctx.should_stop:
                gather()  # rank 0 records every rank's place in the run
        except (KeyboardInterrupt, RunInterrupted):
            return RunOutcome("interrupted", plan.run_dir, EXIT_INTERRUPTED)
        finally:
            ctx.close()
    stopped = ctx.should_stop
    return RunOutcome("interrupted" if stopped else "completed", plan.run_dir, EXIT_INTERRUPTED if stopped else 0)


def _context(plan: Plan, checkpoint: tuple[Path, int] | None, tracker: Any = None, record: RunRecord | None = None,
             is_main: bool = True) -> RunContext:
    """The one place a RunContext is built (rank 0 with its record and tracker; followers without)."""
    return RunContext(
        run_dir=plan.run_dir,
        recipe=plan.recipe.qualified,
        provider=plan.provider,
        tracker=tracker,
        resume_from=checkpoint[0] if checkpoint else None,
        on_record=(lambda facts: record.update(**facts)) if record is not None else None,
        is_main=is_main,
    )


def _train(plan: Plan, ctx: RunContext, record: RunRecord, tracker: Any) -> RunOutcome:
    try:
        if ctx.should_stop:  # stopped while the run was being set up
            raise RunInterrupted()
        result = plan.recipe.item.run(ctx, plan.config)
        if ctx.should_stop:
            raise RunInterrupted()
        ranks = gather()
        if ranks is not None:
            record.update(ranks=ranks)
        if not isinstance(result, ArtifactResult):
            raise TypeError(f"recipe {plan.recipe.qualified} returned {type(result).__name__}, not ArtifactResult")
    except (KeyboardInterrupt, RunInterrupted):
        ctx.log(f"interrupted; continue with: forge run --resume {ctx.run_dir}")
        _finish(ctx, record, tracker, "interrupted", "KILLED")
        return RunOutcome("interrupted", ctx.run_dir, EXIT_INTERRUPTED, record.data)
    except ForgeError as exc:
        _finish(ctx, record, tracker, "failed", "FAILED", error=str(exc))
        raise
    except BaseException as exc:
        _finish(ctx, record, tracker, "failed", "FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    record.write_artifact(ctx.artifact_dir, result, {**ctx.metrics, **result.metrics})
    ctx.log(f"completed: artifact {result.kind} in {ctx.artifact_dir}")
    _finish(ctx, record, tracker, "completed", "FINISHED", close=False)
    try:
        code = _evaluate(plan, ctx, record, tracker)
    finally:
        ctx.close()
    return RunOutcome("completed", ctx.run_dir, code, record.data)


def _evaluate(plan: Plan, ctx: RunContext, record: RunRecord, tracker: Any) -> int:
    """The config's ``eval_suites`` on the finished artifact: kept and listed like ``forge eval``'s results. The
    run stays completed whatever they say; the exit code says it: 3 a gate failed, 2 an eval could not run, 130
    interrupted."""
    if not getattr(plan.config, "eval_suites", None):
        return 0
    from forge.eval_engine import Hooks, run_suites

    def list_in_run(run_dir: Path, entry: dict[str, Any]) -> None:
        record.update(evals=[*record.data.get("evals", []), entry])

    hooks = Hooks(log=ctx.log, progress=ctx.progress, should_stop=lambda: ctx.should_stop, list_in_run=list_in_run,
                  tracking=tracker is not None)
    try:
        with ctx.stop_at_once():  # an evaluation keeps nothing half-done: stop it where it stands
            return run_suites(ctx.run_dir, plan.config, hooks)
    except (KeyboardInterrupt, RunInterrupted):
        ctx.log("eval interrupted: the run is completed; evaluate it with forge eval")
        return EXIT_INTERRUPTED


def _finish(ctx: RunContext, record: RunRecord, tracker: Any, status: str, mlflow_status: str,
            error: str | None = None, close: bool = True) -> None:
    plot = record.finish(status, ctx.metrics, error=error)
    for warning in record.data.get("warnings", []):
        ctx.log(warning)
    if tracker is not None:
        _log_datasets(tracker, record.data, ctx.log)
        for path in (record.path, plot, ctx.run_dir / "config.yaml"):
            if path is not None and path.exists():
                tracker.log_artifact(path)
        tracker.end(mlflow_status)
    if close:
        ctx.close()


def _log_datasets(tracker: Any, manifest: dict[str, Any], log: Any) -> None:
    """The run's data files in MLflow's dataset tracking, tagged with what the recipe found (format, records, PII);
    a redacted copy is logged as the training dataset with its parent's sha256, the source as ``source``."""
    from forge import datafiles

    found = manifest.get("dataset") or {}
    pii = manifest.get("pii") or {}
    redacted = pii.get("redacted")
    for entry in manifest.get("data") or []:
        source = str(entry.get("path") or entry.get("hub"))
        tags = {"forge.field": entry["field"]}
        if entry["field"] == "data":
            if found.get("format"):
                tags["forge.format"] = str(found["format"])
            records = sum(int(found.get(k) or 0) for k in ("train_records", "eval_records"))
            if records:
                tags["forge.records"] = str(records)
            if pii:
                tags["forge.pii"] = f"{pii.get('policy')}: " + (", ".join(
                    f"{n} {k}" for k, n in sorted((pii.get("found") or {}).items())) or "none found")
        try:
            first = next(datafiles.iter_source(source))[0] if entry.get("path") else {}
            fields = [str(k) for k in first]
        except Exception:  # the file changed or went away since the run started: log it without a schema
            fields = []
        context = "source" if redacted and entry["field"] == "data" else \
            ("evaluation" if "eval" in entry["field"] else "training")
        try:
            tracker.log_dataset(source, entry.get("sha256"), fields, context=context, tags=tags)
            if redacted and entry["field"] == "data":
                tracker.log_dataset(redacted["path"], redacted["sha256"], fields, context="training",
                                    tags={**tags, "forge.parent_sha256": str(redacted["parent"].get("sha256"))})
        except Exception as exc:  # tracking is a record of the run, not a reason to fail it
            log(f"mlflow: could not log dataset {source}: {exc}")


class StopRequests:
    """Ctrl-C/SIGTERM handling for the whole run: the first signal asks the recipe to checkpoint and stop at its
    next step (``ctx.should_stop``); a second one stops at once (KeyboardInterrupt). A signal that arrives before
    the run context exists (creating the run directory, connecting to MLflow) is kept and handed to it. Inside
    ``ctx.stop_at_once()`` (data checks, model loading, final evaluations) the first signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.ctx: RunContext | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)

    def attach(self, ctx: RunContext) -> None:
        self.ctx = ctx
        ctx.should_stop = ctx.should_stop or self.requested

    def _handle(self, signum: int, frame: Any) -> None:
        stopping = self.ctx.should_stop if self.ctx is not None else self.requested
        if stopping:
            raise KeyboardInterrupt
        if self.ctx is not None and self.ctx.stopping_at_once:  # no step boundary ahead: stop here
            self.ctx.should_stop = True
            self.ctx.log(f"{signal.Signals(signum).name}: stopping now")
            raise KeyboardInterrupt
        self.requested = True
        if self.ctx is not None:
            self.ctx.should_stop = True
            self.ctx.log(f"{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                         "(again to stop at once)")
