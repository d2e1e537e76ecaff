"""The model registry: MLflow's Model Registry, in the same tracking store as runs (``./mlflow.db`` by default,
``MLFLOW_TRACKING_URI`` otherwise).

A registered version is an MLflow model (pyfunc flavour, :mod:`forge.mlflow_model`) whose MLflow artifact
``forge_artifact`` is the forge artifact directory, with its ``forge.json``. forge keeps its facts in tags:

- model version: ``forge.kind``, ``forge.data_sha256``, ``forge.version``, ``forge.plugins``, ``forge.recipe`` (or
  ``forge.exporter``), ``forge.source``, ``forge.artifact_dir`` (where the artifact is inside the MLflow model),
  ``forge.eval.SUITE`` (the latest recorded result of each suite: compact JSON of metrics, passed, gates,
  data_sha256, finished), ``forge.promoted.ALIAS`` and ``forge.forced.ALIAS`` (who promoted it, when, against
  which gates);
- registered model: ``forge.policy`` (JSON list of gate expressions every promoted version must pass).

References: ``models:/NAME/VERSION``, ``models:/NAME/latest`` and ``models:/NAME@ALIAS`` (:func:`resolve`).
mlflow is imported inside the functions only (``forge --help`` stays fast).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.artifacts import MANIFEST, Artifact, read_manifest, staged_directory
from forge.errors import ConfigError, ForgeError, NotFoundError
from forge.gates import Gate, GateFailed, metric_value, parse_gates

PREFIX = "models:/"
TAG = "forge."
EVAL_TAG = "forge.eval."
POLICY_TAG = "forge.policy"
PROMOTED_TAG = "forge.promoted."
FORCED_TAG = "forge.forced."
ARTIFACT_DIR_TAG = "forge.artifact_dir"
DEFAULT_ALIAS = "production"
CACHE_ENV = "FORGE_REGISTRY_CACHE"
_NAME = r"[A-Za-z0-9_][\w.-]*"
_REFERENCE = re.compile(rf"^(?P<name>{_NAME})(?:/(?P<version>[1-9][0-9]*|latest)|@(?P<alias>[A-Za-z0-9_][\w-]*))?$")


@dataclass(frozen=True)
class ResolvedModel:
    """A registry version resolved to a local directory holding the artifact's files (with its forge.json)."""

    path: Path
    name: str
    version: str
    alias: str | None = None

    @property
    def reference(self) -> str:
        return f"{PREFIX}{self.name}/{self.version}"


# -- references ------------------------------------------------------------------------------------------------------
def is_reference(ref: str) -> bool:
    return str(ref).startswith(PREFIX)


def parse_spec(spec: str, what: str = "reference") -> tuple[str, str | None, str | None]:
    """``[models:/]NAME[/VERSION|@ALIAS]`` → (name, version, alias); a malformed one is a one-line error."""
    text = str(spec).strip()
    body = text.removeprefix(PREFIX)
    match = _REFERENCE.match(body)
    if match is None:
        raise ConfigError(f"{what} {spec!r}: malformed; expected models:/NAME/VERSION or models:/NAME@ALIAS "
                          "(NAME: letters, digits, '_', '.', '-')")
    return match["name"], match["version"], match["alias"]


def parse_reference(ref: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` (both parts required)."""
    if not is_reference(ref):
        raise ConfigError(f"{ref!r}: not a registry reference (models:/NAME/VERSION or models:/NAME@ALIAS)")
    name, version, alias = parse_spec(ref)
    if version is None and alias is None:
        raise ConfigError(f"{ref!r}: names no version; use models:/{name}/VERSION or models:/{name}@ALIAS")
    return name, version, alias


def check_name(name: str) -> str:
    if not re.fullmatch(_NAME, name or "") or len(name) > 200:
        raise ConfigError(f"--name {name!r}: a registered model name is letters, digits, '_', '.', '-' "
                          "(starting with a letter, digit or '_')")
    return name


def check_alias(alias: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][\w-]*", alias or "") or len(alias) > 255:
        raise ConfigError(f"--alias {alias!r}: an alias is letters, digits, '_' and '-'")
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ConfigError(f"--alias {alias!r}: reserved by MLflow ('latest' and vN name versions)")
    return alias


# -- MLflow access ---------------------------------------------------------------------------------------------------
def _client() -> Any:
    from forge.tracking import connect

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow = connect()
    return mlflow.MlflowClient()


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _registered(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if not _missing(exc):
            raise ForgeError(f"registry: {name}: {_first_line(exc)}") from None
    known = [m.name for m in _search_models(client)]
    raise NotFoundError(f"registry: no model named {name!r} (registered: {', '.join(sorted(known)) or 'none'})")


def _search_models(client: Any) -> list[Any]:
    models, token = [], None
    while True:
        page = client.search_registered_models(max_results=200, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return models


def _versions(client: Any, name: str) -> list[Any]:
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name='{name}'", max_results=1000, page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return sorted(versions, key=lambda v: int(v.version))


def _version(client: Any, name: str, version: str | None, alias: str | None) -> Any:
    """The model version named by VERSION (or ``latest``) or ALIAS; unknown ones are one-line errors."""
    from mlflow.exceptions import MlflowException

    model = _registered(client, name)
    if alias is not None:
        aliases = dict(getattr(model, "aliases", {}) or {})
        if alias not in aliases:
            known = ", ".join(f"@{a} → {v}" for a, v in sorted(aliases.items())) or "none"
            raise NotFoundError(f"{PREFIX}{name}@{alias}: no alias {alias!r} (aliases: {known})")
        version = str(aliases[alias])
    if version is None or version == "latest":
        versions = _versions(client, name)
        if not versions:
            raise NotFoundError(f"{PREFIX}{name}: has no versions")
        return versions[-1]
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _missing(exc):
            raise ForgeError(f"{PREFIX}{name}/{version}: {_first_line(exc)}") from None
    known = ", ".join(str(v.version) for v in _versions(client, name)) or "none"
    raise NotFoundError(f"{PREFIX}{name}/{version}: no version {version} (versions: {known})")


def _local_path(uri: str) -> Path | None:
    from urllib.parse import unquote, urlparse

    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and not uri.startswith(("models:", "runs:")):
        return Path(uri)
    return None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "forge" / "registry")


def _files(client: Any, mv: Any) -> Path:
    """The version's artifact directory on this machine: where the store keeps it when that is a local directory,
    else downloaded once into the cache (``FORGE_REGISTRY_CACHE``, default ``~/.cache/forge/registry``)."""
    from forge.tracking import tracking_uri

    inside = (mv.tags or {}).get(ARTIFACT_DIR_TAG)
    if not inside:
        raise ForgeError(f"{PREFIX}{mv.name}/{mv.version}: not registered by forge (no {ARTIFACT_DIR_TAG} tag); "
                         "register artifacts with forge registry add")
    uri = client.get_model_version_download_uri(mv.name, mv.version)
    local = _local_path(uri)
    if local is not None and (local / inside / MANIFEST).is_file():
        return local / inside
    store = hashlib.sha256(tracking_uri().encode()).hexdigest()[:12]
    target = cache_dir() / store / mv.name / str(mv.version)
    artifact = target / Path(inside).name
    if (artifact / MANIFEST).is_file():
        return artifact
    import mlflow

    try:
        with staged_directory(target) as staging:
            mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{inside}", dst_path=str(staging))
    except ForgeError:
        raise
    except Exception as exc:
        raise ForgeError(f"{PREFIX}{mv.name}/{mv.version}: could not download its files from {uri}: "
                         f"{_first_line(exc)}") from None
    if not (artifact / MANIFEST).is_file():
        raise ForgeError(f"{PREFIX}{mv.name}/{mv.version}: its files ({uri}/{inside}) hold no {MANIFEST}")
    return artifact


def resolve(ref: str) -> ResolvedModel:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` → the version's artifact files on this machine."""
    name, version, alias = parse_reference(ref)
    client = _client()
    mv = _version(client, name, version, alias)
    return ResolvedModel(path=_files(client, mv), name=name, version=str(mv.version), alias=alias)


# -- evals -----------------------------------------------------------------------------------------------------------
def compact_eval(eval_json: dict[str, Any]) -> dict[str, Any]:
    """What a version keeps of an ``eval.json``: metrics, passed, gates, data and when."""
    suite, metrics = eval_json.get("suite"), eval_json.get("metrics")
    if not isinstance(suite, str) or not suite or not isinstance(metrics, dict):
        raise ForgeError("eval result has no 'suite' or 'metrics'; expected a complete eval.json")
    return {
        "metrics": metrics,
        "passed": eval_json.get("passed"),
        "gates": [{"expr": g.get("expr"), "passed": g.get("passed")} for g in eval_json.get("gates") or []],
        "data_sha256": eval_json.get("data_sha256"),
        "finished": eval_json.get("finished"),
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _newer(new: dict[str, Any], old_text: str | None) -> bool:
    if not old_text:
        return True
    try:
        old = json.loads(old_text)
    except json.JSONDecodeError:
        return True
    return str(new.get("finished") or "") >= str(old.get("finished") or "")


def record_eval(resolved: ResolvedModel, eval_json: dict[str, Any]) -> None:
    """Store an eval result on the model version (tag ``forge.eval.SUITE``; a result older than the one already
    recorded for that suite is kept out)."""
    entry = compact_eval(eval_json)
    key = EVAL_TAG + eval_json["suite"]
    client = _client()
    mv = _version(client, resolved.name, resolved.version, None)
    if _newer(entry, (mv.tags or {}).get(key)):
        client.set_model_version_tag(resolved.name, str(mv.version), key, _dumps(entry))


def version_evals(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    evals = {}
    for key, value in sorted(tags.items()):
        if key.startswith(EVAL_TAG):
            try:
                evals[key.removeprefix(EVAL_TAG)] = json.loads(value)
            except json.JSONDecodeError:
                continue
    return evals


def stored_evals(artifact_path: Path) -> list[dict[str, Any]]:
    """The artifact's complete eval results, oldest first (``ARTIFACT/evals/*/eval.json``)."""
    from forge.evaluation import stored_results

    return list(stored_results(artifact_path))


# -- add -------------------------------------------------------------------------------------------------------------
def _run_manifest(source: Path, artifact: Artifact) -> dict[str, Any] | None:
    """The manifest of the run that produced the artifact (the source itself, or the artifact's ``run_dir``)."""
    try:
        manifest = read_manifest(source)
        if manifest.get("type") == "run":
            return manifest
        run_dir = artifact.manifest.get("run_dir")
        if run_dir:
            manifest = read_manifest((artifact.path / run_dir).resolve())
            return manifest if manifest.get("type") == "run" else None
    except ForgeError:
        return None
    return None


def _data_sha256(manifest: dict[str, Any]) -> str | None:
    data = manifest.get("data") or []
    if isinstance(data, list):
        hashed = [d for d in data if isinstance(d, dict) and d.get("sha256")]
        main = [d for d in hashed if d.get("field") == "data"] or hashed
        return str(main[0]["sha256"]) if main else None
    return None


def version_tags(artifact: Artifact, run: dict[str, Any] | None, evals: list[dict[str, Any]]) -> dict[str, str]:
    import forge

    manifest = artifact.manifest
    tags = {
        "forge.kind": artifact.kind,
        "forge.version": forge.__version__,
        "forge.plugins": _dumps(manifest.get("plugins") or {}),
        "forge.source": str(artifact.path.resolve()),
        ARTIFACT_DIR_TAG: f"artifacts/{artifact.path.resolve().name}",
    }
    for key in ("recipe", "exporter", "provider"):
        value = manifest.get(key) or (run or {}).get(key)
        if value:
            tags[f"forge.{key}"] = str(value if not isinstance(value, dict) else _dumps(value))
    sha = _data_sha256(manifest)
    if sha:
        tags["forge.data_sha256"] = sha
    if manifest.get("data"):
        tags["forge.data"] = _dumps(manifest["data"])
    if run is not None and (run.get("mlflow") or {}).get("run_id"):
        tags["forge.source_run"] = str(run["mlflow"]["run_id"])
    for result in evals:  # oldest first: the latest result of each suite wins
        tags[EVAL_TAG + result["suite"]] = _dumps(compact_eval(result))
    return tags


def requirements(artifact: Artifact) -> list[str]:
    """What loading the model needs: forge-core and the plugins that made the artifact, at their versions."""
    import mlflow

    import forge

    plugins = artifact.manifest.get("plugins") or {}
    wanted = {"forge-core": forge.__version__}
    for key in ("recipe", "exporter"):
        made_by = str(artifact.manifest.get(key) or "")
        plugin = made_by.split(":", 1)[0] if ":" in made_by else None
        if plugin and plugin in plugins:
            wanted[plugin] = str(plugins[plugin])
    return [f"{dist}=={version}" for dist, version in wanted.items()] + [f"mlflow=={mlflow.__version__}", "pandas"]


def _source_run(client: Any, run: dict[str, Any] | None, name: str) -> tuple[str, bool]:
    """The MLflow run of the forge run that made the artifact when this store has it, else a new run."""
    from mlflow.exceptions import MlflowException

    from forge.tracking import EXPERIMENT_ENV

    run_id = ((run or {}).get("mlflow") or {}).get("run_id")
    if run_id:
        try:
            client.get_run(run_id)
            return str(run_id), False
        except MlflowException:
            pass  # tracked in another store: log to a new run here
    experiment_name = os.environ.get(EXPERIMENT_ENV, "forge")
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    created = client.create_run(experiment_id, run_name=f"registry-add-{name}", tags={"forge.registry_add": name})
    return str(created.info.run_id), True


def add(source: Path, name: str) -> dict[str, Any]:
    """Register the artifact of ``source`` (a completed run directory or an artifact directory) as a new version
    of ``name``. Either the version exists with its files and tags, or nothing was registered."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    import forge.mlflow_model as pyfunc_file

    check_name(name)
    artifact = Artifact.load(Path(source))
    run = _run_manifest(Path(source), artifact)
    tags = version_tags(artifact, run, stored_evals(artifact.path))
    client = _client()
    import mlflow

    created_model = False
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _missing(exc):
            raise ForgeError(f"registry: {name}: {_first_line(exc)}") from None
        try:
            client.create_registered_model(name, tags={"forge.created_by": "forge registry add"})
            created_model = True
        except MlflowException as again:  # another process created it meanwhile: add to it
            if getattr(again, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise ForgeError(f"registry: {name}: {_first_line(again)}") from None
    run_id, created_run = _source_run(client, run, name)
    try:
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(Path(pyfunc_file.__file__)),
            artifacts={pyfunc_file.ARTIFACT_KEY: str(artifact.path.resolve())},
            pip_requirements=requirements(artifact),
            model_config={pyfunc_file.OPTIONS_KEY: {}},  # loaders may override it (predictor options)
            tags={"forge.kind": artifact.kind},
        )
        mv = client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                         model_id=info.model_id)
    except BaseException as exc:
        if created_model:
            with contextlib.suppress(Exception):  # the original error is the one to report
                client.delete_registered_model(name)
        if created_run:
            client.set_terminated(run_id, "FAILED" if not isinstance(exc, KeyboardInterrupt) else "KILLED")
        if isinstance(exc, Exception) and not isinstance(exc, ForgeError):
            raise ForgeError(f"forge registry add {source}: registering failed, nothing registered: "
                             f"{_first_line(exc)}") from None
        raise
    if created_run:
        client.set_terminated(run_id, "FINISHED")
    return {
        "name": name,
        "version": str(mv.version),
        "reference": f"{PREFIX}{name}/{mv.version}",
        "kind": artifact.kind,
        "run_id": run_id,
        "new_run": created_run,
        "source": str(artifact.path.resolve()),
        "evals": sorted(version_evals(tags)),
        "tags": tags,
    }


# -- reading ---------------------------------------------------------------------------------------------------------
def _iso(ms: Any) -> str | None:
    if not ms:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(int(ms) / 1000))


def _aliases_of(model: Any) -> dict[str, str]:
    return {str(a): str(v) for a, v in (getattr(model, "aliases", {}) or {}).items()}


def get_policy(model: Any) -> list[str]:
    text = (getattr(model, "tags", {}) or {}).get(POLICY_TAG)
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _version_summary(mv: Any, aliases: dict[str, str]) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    evals = version_evals(tags)
    return {
        "version": str(mv.version),
        "created": _iso(mv.creation_timestamp),
        "kind": tags.get("forge.kind"),
        "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
        "run_id": mv.run_id,
        "evals": {suite: entry.get("passed") for suite, entry in evals.items()},
    }


def list_models(name: str | None = None) -> dict[str, Any]:
    """Every registered model (``name`` None) or the versions of one."""
    client = _client()
    if name is None:
        models = []
        for model in sorted(_search_models(client), key=lambda m: m.name):
            latest = max((int(v.version) for v in (model.latest_versions or [])), default=None)
            models.append({"name": model.name, "latest_version": str(latest) if latest else None,
                           "aliases": _aliases_of(model), "policy": get_policy(model),
                           "updated": _iso(model.last_updated_timestamp)})
        return {"models": models}
    check_name(name)
    model = _registered(client, name)
    aliases = _aliases_of(model)
    return {"name": name, "aliases": aliases, "policy": get_policy(model),
            "versions": [_version_summary(mv, aliases) for mv in _versions(client, name)]}


def show(spec: str) -> dict[str, Any]:
    """``NAME``: the model, its policy and versions; ``NAME/VERSION`` or ``NAME@ALIAS``: one version in full, with
    its evals and how it stands against the policy (for ``@ALIAS``, or ``@production``)."""
    name, version, alias = parse_spec(spec)
    client = _client()
    if version is None and alias is None:
        listed = list_models(name)
        model = _registered(client, name)
        listed["description"] = model.description or ""
        listed["tags"] = {k: v for k, v in (model.tags or {}).items()}
        return listed
    mv = _version(client, name, version, alias)
    model = _registered(client, name)
    aliases = _aliases_of(model)
    tags = dict(mv.tags or {})
    policy = get_policy(model)
    target = alias or DEFAULT_ALIAS
    return {
        "name": name,
        "version": str(mv.version),
        "reference": f"{PREFIX}{name}/{mv.version}",
        "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
        "created": _iso(mv.creation_timestamp),
        "run_id": mv.run_id,
        "source": mv.source,
        "status": str(mv.status),
        "tags": {k: v for k, v in sorted(tags.items()) if not k.startswith(EVAL_TAG)},
        "evals": version_evals(tags),
        "policy": policy,
        "policy_check": {"alias": target, "gates": check_policy(client, name, mv, target, policy)},
    }


# -- policy and promotion --------------------------------------------------------------------------------------------
def set_policy(name: str, gates: list[str], clear: bool = False) -> list[str]:
    """Replace the policy of ``name`` with ``gates`` (``clear``: remove it); with neither, return it as it is."""
    if clear and gates:
        raise ConfigError("--clear and --gate together: --clear removes the policy, --gate replaces it")
    parsed = parse_gates(gates)
    check_name(name)
    client = _client()
    model = _registered(client, name)
    if clear:
        if POLICY_TAG in (model.tags or {}):
            client.delete_registered_model_tag(name, POLICY_TAG)
        return []
    if not gates:
        return get_policy(model)
    exprs = [g.expr for g in parsed]
    client.set_registered_model_tag(name, POLICY_TAG, _dumps(exprs))
    return exprs


def _check_gate(gate: Gate, evals: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]] | None,
                baseline_label: str) -> dict[str, Any]:
    """One policy gate against a version's recorded evals: every suite that has the metric must pass it."""
    suites = {s: e for s, e in evals.items() if gate.metric in (e.get("metrics") or {})}
    result: dict[str, Any] = {"expr": gate.expr, "metric": gate.metric, "checks": []}
    if not suites:
        recorded = ", ".join(f"{s} ({', '.join(sorted(e.get('metrics') or {}))})" for s, e in evals.items())
        result.update(passed=False, reason=f"no recorded eval has metric {gate.metric!r} "
                                           f"(recorded: {recorded or 'none'})")
        return result
    for suite, entry in sorted(suites.items()):
        check: dict[str, Any] = {"suite": suite, "finished": entry.get("finished"),
                                 "value": metric_value(entry["metrics"][gate.metric])}
        if gate.needs_baseline:
            other = (baseline or {}).get(suite) if baseline is not None else None
            if baseline is None:
                check.update(passed=True, bound=None, note=f"{baseline_label}: nothing to compare with")
                result["checks"].append(check)
                continue
            if other is None or gate.metric not in (other.get("metrics") or {}):
                check.update(passed=False, bound=None, note=f"{baseline_label} has no {suite} result with "
                                                             f"{gate.metric!r}")
                result["checks"].append(check)
                continue
            if other.get("data_sha256") != entry.get("data_sha256"):
                check.update(passed=False, bound=None, note=f"{baseline_label} was evaluated on other data "
                                                             f"({suite}): not comparable")
                result["checks"].append(check)
                continue
            outcome = gate.check(entry["metrics"], other["metrics"])
        else:
            outcome = gate.check(entry["metrics"])
        check.update(passed=outcome.passed, bound=outcome.bound)
        result["checks"].append(check)
    failed = [c for c in result["checks"] if not c["passed"]]
    result["passed"] = not failed
    if failed:
        c = failed[0]
        if c.get("bound") is None:
            result["reason"] = c["note"]
        else:
            result["reason"] = f"{gate.metric} = {c['value']:.4g} in {c['suite']} (bound {c['bound']:.4g})"
    return result


def check_policy(client: Any, name: str, mv: Any, alias: str, policy: list[str]) -> list[dict[str, Any]]:
    """Each policy gate against the version's recorded evals; ``baseline`` bounds compare with the version that
    holds ``alias`` now (on the same suite and data)."""
    gates = parse_gates(policy)
    evals = version_evals(dict(mv.tags or {}))
    holder = _aliases_of(_registered(client, name)).get(alias)
    baseline, label = None, f"no version holds @{alias}"
    if holder is not None and holder != str(mv.version) and any(g.needs_baseline for g in gates):
        baseline = version_evals(dict(client.get_model_version(name, holder).tags or {}))
        label = f"@{alias} (version {holder})"
    return [_check_gate(g, evals, baseline, label) for g in gates]


def promote(name: str, version: str, alias: str = DEFAULT_ALIAS, force: bool = False) -> dict[str, Any]:
    """Point ``alias`` at ``version`` when it passes every policy gate on its recorded evals; otherwise refuse
    (:class:`GateFailed`, exit 3) unless ``force``, which is recorded on the version."""
    check_name(name)
    check_alias(alias)
    if not re.fullmatch(r"[1-9][0-9]*", str(version)):
        raise ConfigError(f"VERSION {version!r}: a version number (1, 2...)")
    client = _client()
    mv = _version(client, name, str(version), None)
    model = _registered(client, name)
    policy = get_policy(model)
    results = check_policy(client, name, mv, alias, policy)
    failed = [r for r in results if not r["passed"]]
    reference = f"{PREFIX}{name}/{mv.version}"
    if failed and not force:
        problems = [f"refusing to promote {reference} to @{alias}: {len(failed)} of {len(results)} policy "
                    "gate(s) not passed (--force promotes anyway, recorded)"]
        problems += [f"gate {r['expr']}: {r['reason']}" for r in failed]
        raise GateFailed(problems[0], problems)
    previous = _aliases_of(model).get(alias)
    try:
        client.set_registered_model_alias(name, alias, str(mv.version))
    except Exception as exc:  # an alias MLflow refuses
        raise ForgeError(f"--alias {alias}: {_first_line(exc)}") from None
    stamp = {"by": _user(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "previous": previous,
             "gates": [r["expr"] for r in results]}
    if failed:
        stamp["failed"] = [f"{r['expr']}: {r['reason']}" for r in failed]
        client.set_model_version_tag(name, str(mv.version), FORCED_TAG + alias, _dumps(stamp))
    client.set_model_version_tag(name, str(mv.version), PROMOTED_TAG + alias, _dumps({**stamp, "forced": bool(failed)}))
    return {"name": name, "version": str(mv.version), "alias": alias, "reference": f"{PREFIX}{name}@{alias}",
            "previous": previous, "forced": bool(failed), "gates": results}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"
