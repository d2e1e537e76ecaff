"""``forge run``: resolve the recipe, validate the config, create the run directory, track, train, record.

A run directory holds ``config.yaml`` (the resolved config), ``forge.json`` (the run manifest: status
running → completed, failed or interrupted), ``run.log``, ``metrics.jsonl``, ``checkpoints/`` and, once
completed, ``artifact/`` with its own manifest. A run that crashed or was interrupted continues with
``forge run --resume RUN_DIR`` from its last complete checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import forge
from forge import config as cfg
from forge.artifacts import (
    MANIFEST,
    SCHEMA,
    ArtifactResult,
    read_manifest,
    sha256_path,
    write_artifact_manifest,
    write_json_atomic,
)
from forge.errors import ConfigError, ForgeError, RunInterrupted
from forge.plugins import PluginSet, Registered, get_plugins
from forge.run.context import RunContext, latest_checkpoint, select_provider

RUNS_DIR = Path("runs")
EXIT_INTERRUPTED = 130


@dataclass
class RunOptions:
    """Everything ``forge run`` was asked to do."""

    recipe: str | None = None
    config_file: Path | None = None
    model: str | None = None
    data: str | None = None
    output_dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    provider: str | None = None
    dry_run: bool = False
    resume: Path | None = None
    tracking: bool = True


@dataclass
class RunOutcome:
    status: str
    run_dir: Path | None
    exit_code: int
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """A validated run, before anything is written."""

    recipe: Registered
    config: Any
    provider: Registered | None
    provider_requested: str | None
    provider_skipped: dict[str, str]
    run_dir: Path


class RunManifest:
    """The run's ``forge.json``, rewritten atomically on every change."""

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.path = run_dir / MANIFEST
        self.data = data

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.data["updated_at"] = _now()
        write_json_atomic(self.path, self.data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _default_run_dir(recipe: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = RUNS_DIR / f"{recipe}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def _check_new_run_dir(path: Path) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise ForgeError(f"--output-dir {path}: exists and is not a directory")
    if (path / MANIFEST).exists():
        manifest = read_manifest(path)
        status = manifest.get("status", "unknown")
        if manifest.get("type") == "run" and status != "completed":
            raise ForgeError(f"--output-dir {path}: holds an unfinished run ({status}); continue it with "
                             f"forge run --resume {path}, or choose another --output-dir")
        raise ForgeError(f"--output-dir {path}: holds a completed forge run; choose another --output-dir")
    if any(path.iterdir()):
        raise ForgeError(f"--output-dir {path}: exists, is not empty and is not a forge run")


def _find_resumable(path: Path | None) -> Path:
    if path is not None and str(path) != "latest":
        return path
    candidates = sorted(
        (p for p in RUNS_DIR.glob("*") if (p / MANIFEST).is_file()), key=lambda p: (p / MANIFEST).stat().st_mtime
    )
    for candidate in reversed(candidates):
        if read_manifest(candidate).get("status") != "completed":
            return candidate
    raise ForgeError(f"--resume: no unfinished run under {RUNS_DIR}/; name the run directory")


def plan_run(options: RunOptions, plugins: PluginSet) -> tuple[Plan, cfg.ConfigSource]:
    """Resolve and validate everything; write nothing, import nothing heavy."""
    if options.resume is not None:
        return _plan_resume(options, plugins)
    source = cfg.ConfigSource()
    if options.config_file is not None:
        cfg.load_config_file(options.config_file, source)
    engine = source.pop_engine_keys()
    recipe_name = options.recipe or engine.get("recipe")
    if not recipe_name:
        raise ConfigError("no recipe: pass --recipe NAME or put 'recipe: NAME' in the config file; "
                          "forge list-plugins --kind recipes lists them")
    recipe = plugins.get("recipes", str(recipe_name))
    if options.model is not None:
        source.set("model", options.model, "--model")
    if options.data is not None:
        source.set("data", options.data, "--data")
    cfg.apply_overrides(source, options.overrides)
    model = recipe.item.config_model()
    for flag, key in (("--model", "model"), ("--data", "data")):
        if key in source.values and key not in model.model_fields and source.where.get(key) == flag:
            raise ConfigError(f"{flag}: recipe {recipe.name} takes no '{key}' (its fields: "
                              f"{', '.join(model.model_fields)})")
    config = cfg.validate(model, source)
    provider, requested, skipped = _plan_provider(recipe, options.provider or engine.get("provider"), plugins)
    output = options.output_dir or (Path(engine["output_dir"]) if engine.get("output_dir") else None)
    run_dir = output if output is not None else _default_run_dir(recipe.name)
    if not options.dry_run:
        _check_new_run_dir(run_dir)
    return Plan(recipe, config, provider, requested, skipped, run_dir), source


def _plan_provider(
    recipe: Registered, requested: str | None, plugins: PluginSet
) -> tuple[Registered | None, str | None, dict[str, str]]:
    if not recipe.item.uses_provider:
        if requested:
            raise ConfigError(f"--provider: recipe {recipe.name} does not load models through a provider")
        return None, None, {}
    provider, skipped = select_provider(plugins, requested)
    return provider, requested or "auto", skipped


def _plan_resume(options: RunOptions, plugins: PluginSet) -> tuple[Plan, cfg.ConfigSource]:
    if options.overrides or options.config_file or options.model or options.data or options.output_dir:
        raise ConfigError("--resume continues a run with its own config; drop --config/--set/--model/--data/"
                          "--output-dir")
    run_dir = _find_resumable(options.resume)
    manifest = read_manifest(run_dir)
    if manifest.get("type") != "run":
        raise ForgeError(f"--resume {run_dir}: not a run directory")
    status = manifest.get("status")
    if status == "completed":
        raise ForgeError(f"--resume {run_dir}: run already completed")
    if status == "running" and manifest.get("host") == socket.gethostname() and _pid_alive(int(manifest["pid"])):
        raise ForgeError(f"--resume {run_dir}: run is still running (pid {manifest['pid']})")
    recipe = plugins.get("recipes", manifest["recipe"])
    if options.recipe and plugins.get("recipes", options.recipe).qualified != recipe.qualified:
        raise ConfigError(f"--recipe {options.recipe}: run {run_dir} was made by {recipe.qualified}")
    source = cfg.load_config_file(run_dir / "config.yaml")
    source.pop_engine_keys()
    config = cfg.validate(recipe.item.config_model(), source)
    requested = options.provider or (manifest.get("provider") or {}).get("requested")
    provider, requested, skipped = _plan_provider(recipe, requested, plugins)
    return Plan(recipe, config, provider, requested, skipped, run_dir), source


def _data_files(config: Any) -> list[dict[str, Any]]:
    """Hash every local data file the config names (fields called ``data`` or ``*_data``)."""
    found = []
    for key, value in config.model_dump().items():
        if not (key == "data" or key.endswith("_data") or key.endswith("_file")) or value is None:
            continue
        path = Path(str(value))
        if path.exists():
            found.append({"field": key, "path": str(path), "sha256": sha256_path(path)})
        else:
            found.append({"field": key, "hub": str(value)})
    return found


def describe(plan: Plan) -> str:
    header = {"recipe": plan.recipe.qualified}
    if plan.provider is not None:
        header["provider"] = plan.provider.qualified
    header["output_dir"] = str(plan.run_dir)
    return yaml.safe_dump(header, sort_keys=False) + cfg.dump(plan.config)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def execute(options: RunOptions, plugins: PluginSet | None = None) -> RunOutcome:
    """Run (or resume) a recipe end to end and return how it ended."""
    plugins = plugins or get_plugins()
    if _rank() != 0:
        return _execute_follower(options, plugins)
    plan, _ = plan_run(options, plugins)
    if options.dry_run:
        sys.stdout.write(describe(plan))
        return RunOutcome("dry-run", None, 0)
    resuming = options.resume is not None
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if resuming:
        manifest = RunManifest(run_dir, read_manifest(run_dir))
    else:
        config_text = yaml.safe_dump(
            {"recipe": plan.recipe.qualified, **({"provider": plan.provider_requested} if plan.provider else {})},
            sort_keys=False,
        ) + cfg.dump(plan.config)
        (run_dir / "config.yaml").write_text(config_text, encoding="utf-8")
        manifest = RunManifest(run_dir, {
            "schema": SCHEMA,
            "type": "run",
            "status": "running",
            "recipe": plan.recipe.qualified,
            "recipe_plugin": plan.recipe.plugin,
            "forge_version": forge.__version__,
            "plugins": plugins.versions(),
            "config": plan.config.model_dump(mode="json"),
            "data": _data_files(plan.config),
            "provider": None,
            "metrics": {},
            "artifact": None,
            "started_at": _now(),
            "resumes": [],
        })
    checkpoint = latest_checkpoint(run_dir / "checkpoints") if resuming else None
    if resuming:
        _truncate_metrics(run_dir / "metrics.jsonl", checkpoint[1] if checkpoint else 0)
        manifest.data.setdefault("resumes", []).append(
            {"at": _now(), "from_checkpoint": str(checkpoint[0].relative_to(run_dir)) if checkpoint else None}
        )
    manifest.update(status="running", pid=os.getpid(), host=socket.gethostname(), error=None,
                    plugins=plugins.versions(), world_size=int(os.environ.get("WORLD_SIZE", "1")))

    tracker = None
    if options.tracking:
        from forge.tracking import Tracker

        previous = (manifest.data.get("mlflow") or {}).get("run_id") if resuming else None
        try:
            tracker = Tracker(experiment="forge", run_name=run_dir.name, run_id=previous)
        except Exception as exc:  # a bad MLFLOW_TRACKING_URI or an unreachable server is the user's to fix
            from forge.tracking import tracking_uri

            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = (f"MLflow tracking to {tracking_uri()} failed: {first} "
                       "(set MLFLOW_TRACKING_URI, or pass --no-tracking)")
            manifest.update(status="failed", error=message, pid=None, finished_at=_now())
            raise ForgeError(message) from None
        manifest.update(mlflow={"tracking_uri": tracker.uri, "run_id": tracker.run_id})
        if not resuming:
            tracker.log_params({"recipe": plan.recipe.qualified, **plan.config.model_dump(mode="json")})
            tracker.set_tags({"forge.recipe": plan.recipe.qualified, "forge.run_dir": str(run_dir.resolve())})

    def record(facts: dict[str, Any]) -> None:
        manifest.update(**facts)

    ctx = RunContext(
        run_dir=run_dir,
        recipe=plan.recipe.qualified,
        config=plan.config,
        plugins=plugins,
        provider=plan.provider,
        provider_requested=plan.provider_requested,
        tracker=tracker,
        resume_from=checkpoint[0] if checkpoint else None,
        resume_step=checkpoint[1] if checkpoint else None,
        on_record=record,
        provider_skipped=plan.provider_skipped,
    )
    if plan.provider_skipped:
        ctx.log("provider " + "; ".join(f"{k} skipped: {v}" for k, v in plan.provider_skipped.items()))
    resumed = " · resuming from scratch" if resuming else ""
    if checkpoint:
        resumed = f" · resuming from {checkpoint[0].name}"
    ctx.log(f"run {run_dir} · recipe {plan.recipe.qualified}{resumed}"
            + (f" · tracking {tracker.uri} run {tracker.run_id}" if tracker else ""))
    return _train(plan, ctx, manifest, tracker)


def _execute_follower(options: RunOptions, plugins: PluginSet) -> RunOutcome:
    """Ranks other than 0 of a multi-process run: train, and leave the run directory to rank 0."""
    follower = RunOptions(**{**options.__dict__, "dry_run": True})
    if options.resume is not None:
        run_dir = Path(options.resume)
        manifest = read_manifest(run_dir)
        recipe = plugins.get("recipes", manifest["recipe"])
        source = cfg.load_config_file(run_dir / "config.yaml")
        source.pop_engine_keys()
        plan = Plan(recipe, cfg.validate(recipe.item.config_model(), source), None, None, {}, run_dir)
        plan.provider, plan.provider_requested, _ = _plan_provider(
            recipe, (manifest.get("provider") or {}).get("requested"), plugins)
    else:
        plan, _ = plan_run(follower, plugins)
    deadline = time.time() + 120
    while not (plan.run_dir / MANIFEST).exists() and time.time() < deadline:
        time.sleep(0.1)
    checkpoint = latest_checkpoint(plan.run_dir / "checkpoints") if options.resume is not None else None
    ctx = RunContext(
        run_dir=plan.run_dir, recipe=plan.recipe.qualified, config=plan.config, plugins=plugins,
        provider=plan.provider, provider_requested=plan.provider_requested,
        resume_from=checkpoint[0] if checkpoint else None, resume_step=checkpoint[1] if checkpoint else None,
        is_main=False,
    )
    restore = _install_stop_handlers(ctx)
    try:
        plan.recipe.item.run(ctx, plan.config)
    except (KeyboardInterrupt, RunInterrupted):
        return RunOutcome("interrupted", plan.run_dir, EXIT_INTERRUPTED)
    finally:
        restore()
        ctx.close()
    return RunOutcome("interrupted" if ctx.should_stop else "completed", plan.run_dir,
                      EXIT_INTERRUPTED if ctx.should_stop else 0)


def _train(plan: Plan, ctx: RunContext, manifest: RunManifest, tracker: Any) -> RunOutcome:
    restore = _install_stop_handlers(ctx)
    try:
        result = plan.recipe.item.run(ctx, plan.config)
        if ctx.should_stop:
            raise RunInterrupted()
        if not isinstance(result, ArtifactResult):
            raise TypeError(f"recipe {plan.recipe.qualified} returned {type(result).__name__}, not ArtifactResult")
    except (KeyboardInterrupt, RunInterrupted):
        ctx.log(f"interrupted; continue with: forge run --resume {ctx.run_dir}")
        _finish(ctx, manifest, tracker, "interrupted", "KILLED")
        return RunOutcome("interrupted", ctx.run_dir, EXIT_INTERRUPTED, manifest.data)
    except ForgeError as exc:
        _finish(ctx, manifest, tracker, "failed", "FAILED", error=str(exc))
        raise
    except BaseException as exc:
        _finish(ctx, manifest, tracker, "failed", "FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        restore()
    metrics = {**ctx.metrics, **result.metrics}
    made_by = {
        "recipe": plan.recipe.qualified,
        "provider": manifest.data.get("provider"),
        "forge_version": forge.__version__,
        "plugins": manifest.data["plugins"],
        "config": manifest.data["config"],
        "data": manifest.data["data"],
        "run_dir": "..",
        "parent": None,
    }
    artifact_manifest = write_artifact_manifest(ctx.artifact_dir, ArtifactResult(result.kind, metrics, result.extra),
                                                made_by)
    manifest.data["metrics"] = metrics
    manifest.data["artifact"] = {"kind": result.kind, "path": "artifact", "files": artifact_manifest["files"]}
    ctx.log(f"completed: artifact {result.kind} in {ctx.artifact_dir}")
    _finish(ctx, manifest, tracker, "completed", "FINISHED")
    return RunOutcome("completed", ctx.run_dir, 0, manifest.data)


def _finish(ctx: RunContext, manifest: RunManifest, tracker: Any, status: str, mlflow_status: str,
            error: str | None = None) -> None:
    plot = None
    try:
        from forge.run.plots import plot_metrics

        plot = plot_metrics(ctx.run_dir / "metrics.jsonl", ctx.run_dir / "metrics.png", title=ctx.run_dir.name)
    except Exception as exc:  # a plot is a convenience; never lose the run's status over it
        ctx.log(f"could not plot metrics: {type(exc).__name__}: {exc}")
    manifest.update(status=status, finished_at=_now(), error=error, pid=None,
                    plots=[plot.name] if plot else [], metrics={**manifest.data.get("metrics", {}), **ctx.metrics})
    if tracker is not None:
        for path in (manifest.path, plot, ctx.run_dir / "config.yaml"):
            if path is not None and path.exists():
                tracker.log_artifact(path)
        tracker.end(mlflow_status)
    ctx.close()


def _install_stop_handlers(ctx: RunContext) -> Callable[[], None]:
    """First Ctrl-C/SIGTERM asks the recipe to checkpoint and stop; a second one stops at once."""

    def handler(signum: int, frame: Any) -> None:
        if ctx.should_stop:
            raise KeyboardInterrupt
        ctx.should_stop = True
        ctx.log(f"{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                "(again to stop at once)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint we resume from: those steps run again."""
    if not path.exists():
        return
    import json

    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step") is None or row["step"] <= step:
            kept.append(line)
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
