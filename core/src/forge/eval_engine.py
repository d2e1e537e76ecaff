"""Running an evaluation suite on an artifact and keeping the result: ``forge eval`` and a recipe's ``eval_suites``.

    prepare()   resolve the reference, the suite, the data, the options and the gates: every bad input is a one-line
                error (exit 2) before anything runs or is written
    evaluate()  run the evaluator in a staged directory, add intervals, compare with the baseline, check the gates,
                log to MLflow, write eval.json last and rename the directory into place; then list it in the run
                manifest and (for a registry reference) record it in the registry

A result directory holds ``eval.json`` only once complete: an interrupted or failed eval leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import forge
from forge.artifacts import MANIFEST, read_manifest, sha256_path, staged_directory, write_json_atomic
from forge.contributions import Registered
from forge.errors import ConfigError, DataError, ForgeError, NotFoundError
from forge.evaluation import EVALS, EvalRequest, EvalResult, mean_interval, read_results
from forge.gates import Gate, GateResult, check_gates, parse_gates
from forge.plugins import PluginSet, get_plugins
from forge.references import Reference, resolve_reference

EVAL_SCHEMA = 1
EVAL_JSON = "eval.json"
RECORDS = "records.jsonl"


@dataclass
class EvalOptions:
    """What ``forge eval`` was asked to do."""

    reference: str
    suite: str
    data: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    gates: list[str] = field(default_factory=list)
    baseline: str | None = None
    seed: int = 0
    output_dir: Path | None = None


@dataclass
class Prepared:
    """A validated eval, before anything runs."""

    options: EvalOptions
    evaluator: Registered
    reference: Reference
    gates: list[Gate]
    data: Path | None
    data_sha256: str | None
    target: Path
    baseline: Reference | None = None


@dataclass
class EvalOutcome:
    eval_json: dict[str, Any]
    path: Path
    gates: list[GateResult]
    comparison: list[dict[str, Any]]
    messages: list[str] = field(default_factory=list)

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# -- preparing ------------------------------------------------------------------------------------------------------
def suites_for(plugins: PluginSet, kind: str) -> list[str]:
    return sorted({r.name for r in plugins.all("evaluators") if kind in r.item.accepts})


def pick_evaluator(plugins: PluginSet, name: str, ref: str) -> Registered:
    """The suite ``name``; unknown → one line naming the installed suites (and those for the artifact's kind)."""
    try:
        return plugins.get("evaluators", name)
    except NotFoundError:
        installed = sorted({r.name for r in plugins.all("evaluators")})
        hint = ""
        try:
            kind = resolve_reference(ref).artifact.kind
            hint = f"; for a {kind} artifact: {', '.join(suites_for(plugins, kind)) or 'none'}"
        except ForgeError:
            pass
        raise NotFoundError(f"--suite {name}: unknown suite; installed: {', '.join(installed) or '(none)'}"
                            f"{hint}") from None


def resolve_for(evaluator: Registered, ref: str, plugins: PluginSet, flag: str = "") -> Reference:
    """Resolve ``ref`` to an artifact the evaluator takes (a run's export when the run's own artifact is not)."""
    reference = resolve_reference(ref, tuple(evaluator.item.accepts))
    kind = reference.artifact.kind
    if kind not in evaluator.item.accepts:
        raise ForgeError(f"{flag}{ref}: suite {evaluator.name} does not take {kind} artifacts (it takes "
                         f"{', '.join(evaluator.item.accepts)}); suites for {kind}: "
                         f"{', '.join(suites_for(plugins, kind)) or 'none installed'}")
    return reference


def evals_root(reference: Reference) -> Path:
    """Where results of this reference are kept: ``ARTIFACT/evals``, or ``./evals/NAME-vVERSION`` for a registry
    version (its files are the registry's, not ours to write into)."""
    if reference.is_registry:
        resolved = reference.registry
        return Path.cwd() / EVALS / f"{resolved.name}-v{resolved.version}"
    return reference.artifact.path / EVALS


def _new_dir(root: Path, suite: str) -> Path:
    from forge.artifacts import fresh_directory

    return fresh_directory(root, suite.replace(":", "-"))


def prepare(options: EvalOptions, plugins: PluginSet | None = None) -> Prepared:
    """Validate everything ``forge eval`` can check before evaluating; raise one-line errors (exit 2)."""
    plugins = plugins or get_plugins()
    gates = parse_gates(options.gates)
    if options.baseline is None:
        needing = [g.expr for g in gates if g.needs_baseline]
        if needing:
            raise ConfigError(f"--gate {needing[0]!r}: compares with the baseline, but no --baseline was given")
    evaluator = pick_evaluator(plugins, options.suite, options.reference)
    reference = resolve_for(evaluator, options.reference, plugins)
    data, digest = None, None
    if options.data is not None:
        data = Path(options.data).expanduser()
        if not data.exists():
            raise DataError(f"--data {options.data}: file not found")
        data = data.resolve()
        digest = sha256_path(data)
    baseline = resolve_for(evaluator, options.baseline, plugins, "--baseline ") if options.baseline else None
    if options.output_dir is not None:
        target = Path(options.output_dir)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ForgeError(f"--output-dir {target}: already exists and is not empty")
    else:
        target = _new_dir(evals_root(reference), evaluator.name)
    _check_writable(target, options.output_dir is None)
    return Prepared(options, evaluator, reference, gates, data, digest, target, baseline)


def _check_writable(target: Path, default: bool) -> None:
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        hint = "; choose another place with --output-dir" if default else ""
        raise ForgeError(f"{target.parent}: not writable, the result cannot be kept there{hint}")


# -- running --------------------------------------------------------------------------------------------------------
def log_line(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"[forge {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)
    sys.stderr.flush()


def progress_bar(iterable: Any = None, total: int | None = None, desc: str = "", **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, file=sys.stderr, leave=False, **kwargs)


@dataclass
class Hooks:
    """How an eval talks to the outside: log lines, progress bars, the stop flag, and how it lists itself in the
    producing run's manifest (``forge run`` passes its own record, which it holds locked)."""

    log: Callable[[str], None] = log_line
    progress: Callable[..., Any] = progress_bar
    should_stop: Callable[[], bool] = lambda: False
    list_in_run: Callable[[Path, dict[str, Any]], None] | None = None
    tracking: bool = True


def evaluate(prepared: Prepared, hooks: Hooks | None = None, plugins: PluginSet | None = None) -> EvalOutcome:
    """Run the suite, keep the result, and return it; gates are checked but a failed one is not raised here."""
    hooks = hooks or Hooks()
    plugins = plugins or get_plugins()
    options = prepared.options
    reference = prepared.reference
    messages: list[str] = []
    if reference.note:
        hooks.log(reference.note)
    baseline = _baseline(prepared, hooks, plugins) if prepared.baseline is not None else None
    started = now()
    hooks.log(f"eval {prepared.evaluator.qualified} on {reference.artifact.kind} {reference.artifact.path}"
              + (f" · data {prepared.data}" if prepared.data else ""))
    with staged_directory(prepared.target) as staging:
        request = EvalRequest(data=prepared.data, options=dict(options.options), output_dir=staging,
                              seed=options.seed, log=hooks.log, progress=hooks.progress,
                              should_stop=hooks.should_stop)
        result = prepared.evaluator.item.run(reference.artifact, request)
        if hooks.should_stop():
            raise KeyboardInterrupt
        if not isinstance(result, EvalResult):
            raise TypeError(f"evaluator {prepared.evaluator.qualified} returned {type(result).__name__}, "
                            "not EvalResult")
        metrics = metrics_with_intervals(result, options.seed)
        baseline_metrics = baseline["metrics"] if baseline is not None else None
        gate_results = check_gates(prepared.gates, metrics, baseline_metrics)  # unknown metric: exit 2, nothing kept
        comparison = compare(metrics, baseline_metrics) if baseline_metrics is not None else []
        plots = _keep_plots(result.plots, staging)
        with (staging / RECORDS).open("w", encoding="utf-8") as handle:
            for record in result.records:
                handle.write(json.dumps(_plain(record), default=str) + "\n")
        run_id, why_not = mlflow_target(reference) if hooks.tracking else (None, "MLflow tracking is off")
        eval_json: dict[str, Any] = {
            "schema": EVAL_SCHEMA,
            "suite": prepared.evaluator.name,
            "evaluator": prepared.evaluator.qualified,
            "artifact": str(reference.artifact.path.resolve()),
            "artifact_kind": reference.artifact.kind,
            "reference": options.reference,
            "data": str(prepared.data) if prepared.data else None,
            "data_sha256": prepared.data_sha256,
            "options": _plain(options.options),
            "seed": options.seed,
            "metrics": metrics,
            "gates": [g.to_json() for g in gate_results],
            "passed": all(g.passed for g in gate_results) if gate_results else None,
            "baseline": ({**baseline, "comparison": comparison} if baseline is not None else None),
            "n_records": len(result.records),
            "plots": plots,
            "extra": _plain(result.extra),
            "versions": {"forge": forge.__version__, **plugins.versions()},
            "started": started,
            "finished": now(),
            "mlflow_run_id": None,
        }
        if run_id is not None:
            logged, why_not = log_to_mlflow(reference, run_id, metrics)
            eval_json["mlflow_run_id"] = run_id if logged else None
        if why_not:
            messages.append(f"not logged to MLflow: {why_not}")
        write_json_atomic(staging / EVAL_JSON, eval_json)
    path = prepared.target
    eval_json_path = path / EVAL_JSON
    if eval_json["mlflow_run_id"]:
        _log_mlflow_file(reference, eval_json["mlflow_run_id"], eval_json_path, path.name)
    _list_in_run(reference, eval_json, path, hooks)
    if reference.is_registry:
        _record_in_registry(reference, eval_json, path)
    for message in messages:
        hooks.log(message)
    return EvalOutcome(eval_json, path, gate_results, comparison, messages)


def metrics_with_intervals(result: EvalResult, seed: int) -> dict[str, dict[str, float | None]]:
    """``{name: {"value", "low", "high"}}``: the evaluator's own interval, else a seeded bootstrap interval of the
    mean for metrics given per example, else none."""
    metrics: dict[str, dict[str, float | None]] = {}
    for name, value in result.metrics.items():
        low: float | None = None
        high: float | None = None
        if name in result.intervals:
            low, high = result.intervals[name]
        elif name in result.per_example and len(result.per_example[name]):
            low, high = mean_interval(list(result.per_example[name]), seed=seed)
        metrics[str(name)] = {"value": _finite(value), "low": _finite(low), "high": _finite(high)}
    return metrics


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def compare(metrics: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of this eval: its value, the baseline's, the difference, and whether the difference is
    outside the intervals (they do not overlap; ``None`` when either has no interval)."""
    rows = []
    for name, entry in metrics.items():
        other = baseline.get(name)
        this_value = entry.get("value")
        base_value = other.get("value") if isinstance(other, dict) else None
        delta = this_value - base_value if this_value is not None and base_value is not None else None
        outside = None
        if isinstance(other, dict) and None not in (entry.get("low"), entry.get("high"), other.get("low"),
                                                    other.get("high")):
            outside = bool(entry["low"] > other["high"] or entry["high"] < other["low"])
        rows.append({"metric": name, "this": this_value, "baseline": base_value, "delta": delta,
                     "outside_interval": outside})
    return rows


def _keep_plots(plots: list[Path], staging: Path) -> list[str]:
    """Plot paths relative to the eval directory (plots written elsewhere are copied in)."""
    import shutil

    kept = []
    for plot in plots:
        plot = Path(plot)
        try:
            kept.append(plot.resolve().relative_to(staging.resolve()).as_posix())
        except ValueError:
            if plot.is_file():
                shutil.copy2(plot, staging / plot.name)
                kept.append(plot.name)
    return kept


def _plain(value: Any) -> Any:
    """JSON-friendly copies of numpy scalars/arrays, paths and tuples."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return _plain(value.tolist())
    return value


# -- baselines ------------------------------------------------------------------------------------------------------
def _baseline(prepared: Prepared, hooks: Hooks, plugins: PluginSet) -> dict[str, Any]:
    """The baseline's result on the same suite, data and options: a stored one when there is one, else evaluated
    now (and kept with the baseline, like any eval)."""
    options = prepared.options
    assert prepared.baseline is not None and options.baseline is not None
    stored = find_stored(prepared.baseline, prepared.evaluator.name, prepared.data_sha256, options.options)
    if stored is not None:
        path, found = stored
        hooks.log(f"baseline {options.baseline}: reusing its {found['suite']} eval of {found['finished']} ({path})")
        return {"reference": options.baseline, "metrics": found["metrics"], "path": str(path.resolve()),
                "reused": True}
    hooks.log(f"baseline {options.baseline}: no stored {prepared.evaluator.name} eval on this data and options; "
              "evaluating it")
    baseline_options = EvalOptions(reference=options.baseline, suite=options.suite, data=prepared.data,
                                   options=dict(options.options), seed=options.seed)
    target = _new_dir(evals_root(prepared.baseline), prepared.evaluator.name)
    inner = Prepared(baseline_options, prepared.evaluator, prepared.baseline, [], prepared.data,
                     prepared.data_sha256, target)
    outcome = evaluate(inner, Hooks(log=hooks.log, progress=hooks.progress, should_stop=hooks.should_stop,
                                    tracking=hooks.tracking), plugins)
    return {"reference": options.baseline, "metrics": outcome.eval_json["metrics"], "path": str(outcome.path.resolve()),
            "reused": False}


def find_stored(reference: Reference, suite: str, data_sha256: str | None,
                options: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete result of ``reference`` for this suite, data (by sha256) and options. Results without
    a data file (the suite's default data) are not reused: the default may differ between artifacts."""
    if data_sha256 is None:
        return None
    wanted = _plain(options)
    for path, result in reversed(read_results(evals_root(reference))):
        if (result.get("suite") == suite and result.get("data_sha256") == data_sha256
                and result.get("options") == wanted
                and result.get("artifact") == str(reference.artifact.path.resolve())):
            return path, result
    return None


# -- where results are listed ---------------------------------------------------------------------------------------
def mlflow_target(reference: Reference) -> tuple[str | None, str | None]:
    """The MLflow run that produced the artifact, or why there is none."""
    if reference.is_registry:
        run_id = getattr(reference.registry, "run_id", None) or _registry_run_id(reference.registry)
        return (str(run_id), None) if run_id else (None, f"{reference.text}: the model version names no MLflow run")
    if reference.run_dir is None:
        return None, f"{reference.artifact.path} was not made by a forge run here (no run manifest)"
    manifest = read_manifest(reference.run_dir)
    run_id = (manifest.get("mlflow") or {}).get("run_id")
    if not run_id:
        return None, f"run {reference.run_dir} was not tracked (--no-tracking)"
    return str(run_id), None


def _registry_run_id(resolved: Any) -> str | None:
    """The run a registered model version was made from (MLflow keeps it on the version)."""
    try:
        from forge.tracking import connect

        mlflow = connect()
        version = mlflow.tracking.MlflowClient().get_model_version(resolved.name, str(resolved.version))
        return str(version.run_id) if version.run_id else None
    except Exception:  # no store, no such version: nothing to log to
        return None


def _tracking_uri(reference: Reference) -> str:
    from forge.tracking import tracking_uri

    if os.environ.get("MLFLOW_TRACKING_URI") or reference.run_dir is None:
        return tracking_uri()
    recorded = (read_manifest(reference.run_dir).get("mlflow") or {}).get("tracking_uri")
    return str(recorded) if recorded else tracking_uri()


def log_to_mlflow(reference: Reference, run_id: str, metrics: dict[str, Any]) -> tuple[bool, str | None]:
    """Log ``eval/NAME`` (and ``eval/NAME_low``/``_high``) to the producing MLflow run; (logged, why not)."""
    from forge.tracking import connect

    uri = _tracking_uri(reference)
    try:
        mlflow = connect(uri)
        from mlflow.entities import Metric

        client = mlflow.tracking.MlflowClient()
        try:
            client.get_run(run_id)
        except Exception:
            return False, f"MLflow run {run_id} is not in the tracking store {uri}"
        stamp = int(time.time() * 1000)
        batch = []
        for name, entry in metrics.items():
            for suffix, key in (("", "value"), ("_low", "low"), ("_high", "high")):
                if entry.get(key) is not None:
                    batch.append(Metric(key=f"eval/{name}{suffix}", value=float(entry[key]), timestamp=stamp, step=0))
        for start in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[start:start + 1000])
    except ForgeError as exc:
        return False, str(exc)
    except Exception as exc:  # MLflow is a record of the result, not the result: keep the eval, say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"MLflow logging to {uri} failed: {type(exc).__name__}: {first}"
    return True, None


def _log_mlflow_file(reference: Reference, run_id: str, path: Path, name: str) -> None:
    try:
        import mlflow

        mlflow.tracking.MlflowClient(tracking_uri=_tracking_uri(reference)).log_artifact(
            run_id, str(path), artifact_path=f"evals/{name}")
    except Exception:  # the metrics are logged; the file is a convenience
        pass


def manifest_entry(eval_json: dict[str, Any], path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        shown = path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        shown = str(path.resolve())
    return {"suite": eval_json["suite"], "path": shown,
            "metrics": {k: v["value"] for k, v in eval_json["metrics"].items()},
            "passed": eval_json["passed"], "finished": eval_json["finished"]}


def _list_in_run(reference: Reference, eval_json: dict[str, Any], path: Path, hooks: Hooks) -> None:
    if reference.run_dir is None:
        return
    entry = manifest_entry(eval_json, path, reference.run_dir)
    if hooks.list_in_run is not None:
        hooks.list_in_run(reference.run_dir, entry)
        return
    from forge.run.record import append_eval

    try:
        append_eval(reference.run_dir, entry)
    except ForgeError as exc:
        hooks.log(f"warning: the eval is kept in {path}, but not listed in {reference.run_dir / MANIFEST}: {exc}")


def _record_in_registry(reference: Reference, eval_json: dict[str, Any], path: Path) -> None:
    from forge import registry

    try:
        registry.record_eval(reference.registry, eval_json)
    except ForgeError as exc:
        raise ForgeError(f"the eval is kept in {path}, but recording it in the registry failed: {exc}") from None


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------
@contextmanager
def stop_requests(log: Callable[[str], None] = log_line) -> Iterator[Callable[[], bool]]:
    """Ctrl-C/SIGTERM during an eval: the first asks the evaluator to stop (``should_stop``), a second stops at
    once; either way the eval ends with KeyboardInterrupt (exit 130) and keeps nothing."""
    state = {"stop": False}

    def handle(signum: int, frame: Any) -> None:
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        log(f"{signal.Signals(signum).name}: stopping the eval; nothing is kept (again to stop at once)")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: state["stop"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- recipes' eval_suites -------------------------------------------------------------------------------------------
def check_suites(config: Any, plugins: PluginSet, where: str) -> None:
    """At planning: every suite in ``eval_suites`` must be installed (``where``: the key's origin)."""
    problems = []
    for index, spec in enumerate(getattr(config, "eval_suites", None) or []):
        try:
            plugins.get("evaluators", spec.suite)
        except ForgeError:
            installed = sorted({r.name for r in plugins.all("evaluators")})
            problems.append(f"{where}: eval_suites[{index}].suite: unknown suite '{spec.suite}' (installed: "
                            f"{', '.join(installed) or 'none'})")
    if problems:
        raise ConfigError(problems[0], problems)


def run_suites(run_dir: Path, config: Any, hooks: Hooks, plugins: PluginSet | None = None) -> int:
    """Evaluate a finished run's artifact with each of the config's ``eval_suites``; the exit code: 0, 3 when a
    gate failed, 2 when an eval could not run (bad data...). Each result is kept and listed like ``forge eval``'s."""
    plugins = plugins or get_plugins()
    code = 0
    for spec in getattr(config, "eval_suites", None) or []:
        options = EvalOptions(reference=str(run_dir), suite=spec.suite, data=spec.data, options=dict(spec.options),
                              gates=list(spec.gates), seed=int(getattr(config, "seed", 0)))
        try:
            outcome = evaluate(prepare(options, plugins), hooks, plugins)
        except ForgeError as exc:
            for problem in exc.problems:
                hooks.log(f"eval {spec.suite}: {problem}")
            code = max(code, exc.exit_code)
            continue
        for line in summary_lines(outcome):
            hooks.log(line)
        if outcome.failed_gates:
            code = max(code, 3)
    return code


# -- showing --------------------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def summary_lines(outcome: EvalOutcome) -> list[str]:
    """What a person reads: the metrics with their intervals, the baseline comparison, the gates."""
    data = outcome.eval_json
    lines = [f"{data['suite']} on {data['reference']}: {data['n_records']} records → {outcome.path}"]
    rows = [[name, _fmt(m["value"]), f"{_fmt(m['low'])} – {_fmt(m['high'])}" if m["low"] is not None else "-"]
            for name, m in data["metrics"].items()]
    lines += _table(["metric", "value", "95% interval"], rows)
    if outcome.comparison:
        lines.append(f"baseline {data['baseline']['reference']}"
                     + (" (stored result reused)" if data["baseline"].get("reused") else ""))
        lines += _table(["metric", "this", "baseline", "delta", "outside interval"],
                        [[r["metric"], _fmt(r["this"]), _fmt(r["baseline"]), _fmt(r["delta"]),
                          "n/a" if r["outside_interval"] is None else _fmt(r["outside_interval"])]
                         for r in outcome.comparison])
    lines += [g.describe() for g in outcome.gates]
    return lines
