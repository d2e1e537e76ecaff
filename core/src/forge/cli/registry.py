"""``forge registry add|list|show|policy|promote``: versions of artifacts in MLflow's Model Registry, promoted to an
alias (``production``) only when their recorded evals pass the model's policy gates. See docs/registry.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    name="registry",
    help="Register artifacts as MLflow model versions, set promotion policies, promote to aliases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _gates_line(evals: dict[str, Any]) -> str:
    marks = {True: "passed", False: "FAILED", None: "no gates"}
    return ", ".join(f"{suite} ({marks.get(passed, passed)})" for suite, passed in evals.items()) or "-"


@app.command("add")
def add(
    source: Path = typer.Argument(..., help="A completed run directory or an artifact (or export) directory."),
    name: str = typer.Option(..., "--name", "-n", help="Registered model name (created when new)."),
    as_json: bool = JSON,
) -> None:
    """Register an artifact as a new version of NAME. Example: forge registry add runs/classify-1 --name sentiment"""
    from forge import registry

    added = registry.add(source, name)
    if as_json:
        _print_json(added)
        return
    where = "new run" if added["new_run"] else "run"
    typer.echo(f"registered {added['reference']} ({added['kind']}) from {added['source']} "
               f"[MLflow {where} {added['run_id']}]")
    if added["evals"]:
        typer.echo(f"  evals recorded: {', '.join(added['evals'])}")


@app.command("list")
def list_(
    name: str = typer.Argument(None, help="A registered model: list its versions (default: every model)."),
    as_json: bool = JSON,
) -> None:
    """List registered models, or the versions of one. Example: forge registry list sentiment"""
    from forge import registry

    listed = registry.list_models(name)
    if as_json:
        _print_json(listed)
        return
    if name is None:
        if not listed["models"]:
            typer.echo("no registered models (forge registry add RUN --name NAME)")
        for model in listed["models"]:
            aliases = " ".join(f"@{a}→{v}" for a, v in sorted(model["aliases"].items()))
            policy = f"  policy: {' '.join(model['policy'])}" if model["policy"] else ""
            typer.echo(f"{model['name']}  latest {model['latest_version'] or '-'}  {aliases}{policy}".rstrip())
        return
    _print_versions(listed)


def _print_versions(listed: dict[str, Any]) -> None:
    typer.echo(f"{listed['name']}  policy: {' '.join(listed['policy']) or 'none'}")
    if not listed["versions"]:
        typer.echo("  no versions")
    for v in listed["versions"]:
        aliases = " ".join(f"@{a}" for a in v["aliases"])
        typer.echo(f"  {v['version']:>4}  {v['created'] or '':<24}  {v['kind'] or '-':<22}  "
                   f"evals: {_gates_line(v['evals'])}  {aliases}".rstrip())


@app.command("show")
def show(
    spec: str = typer.Argument(..., metavar="NAME[@ALIAS|/VERSION]",
                               help="A model (its versions), or one version: NAME/3, NAME@production."),
    as_json: bool = JSON,
) -> None:
    """Show a registered model or one version: tags, evals, policy. Example: forge registry show sentiment@production"""
    from forge import registry
    from forge.gates import metric_value

    shown = registry.show(spec)
    if as_json:
        _print_json(shown)
        return
    if "versions" in shown:
        _print_versions(shown)
        return
    typer.echo(f"{shown['reference']}  aliases: {' '.join('@' + a for a in shown['aliases']) or 'none'}")
    typer.echo(f"  created {shown['created']}  MLflow run {shown['run_id']}  source {shown['source']}")
    for key, value in shown["tags"].items():
        typer.echo(f"  {key}: {value}")
    for suite, entry in shown["evals"].items():
        metrics = ", ".join(f"{m}={metric_value(v):.4g}" for m, v in sorted((entry.get("metrics") or {}).items()))
        status = {True: "passed", False: "FAILED", None: "no gates"}.get(entry.get("passed"))
        typer.echo(f"  eval {suite} ({status}, {entry.get('finished')}): {metrics}")
    check = shown["policy_check"]
    if not shown["policy"]:
        typer.echo("  policy: none (any version can be promoted)")
    for gate in check["gates"]:
        typer.echo(f"  policy gate {gate['expr']} for @{check['alias']}: "
                   + ("passes" if gate["passed"] else f"FAILS: {gate['reason']}"))


@app.command("policy")
def policy(
    name: str = typer.Argument(..., help="A registered model."),
    gates: list[str] = typer.Option([], "--gate", "-g", help="A gate every promoted version must pass, e.g. "
                                    "'accuracy>=0.85' (repeatable; replaces the policy)."),
    clear: bool = typer.Option(False, "--clear", help="Remove the policy."),
    as_json: bool = JSON,
) -> None:
    """Set (or show) a model's promotion policy. Example: forge registry policy sentiment --gate 'accuracy>=0.85'"""
    from forge import registry

    current = registry.set_policy(name, list(gates), clear)
    if as_json:
        _print_json({"name": name, "policy": current})
        return
    verb = "cleared" if clear else ("set" if gates else "is")
    typer.echo(f"{name} policy {verb}: {' '.join(current) if current else 'none'}")


@app.command("promote")
def promote(
    name: str = typer.Argument(..., help="A registered model."),
    version: str = typer.Argument(..., help="The version to promote."),
    alias: str = typer.Option("production", "--alias", "-a", help="MLflow alias to point at the version."),
    force: bool = typer.Option(False, "--force", help="Promote even when policy gates fail (recorded as a tag)."),
    as_json: bool = JSON,
) -> None:
    """Point an alias at a version if its recorded evals pass the policy (exit 3 if not).
    Example: forge registry promote sentiment 3 --alias production"""
    from forge import registry

    promoted = registry.promote(name, version, alias, force)
    failed = [g for g in promoted["gates"] if not g["passed"]]
    if failed:
        print(f"forge: warning: --force: promoted {name}/{promoted['version']} to @{alias} although "
              f"{len(failed)} policy gate(s) did not pass: " + "; ".join(f"{g['expr']} ({g['reason']})" for g in failed)
              + f" (recorded in tag {registry.FORCED_TAG}{alias})", file=sys.stderr)
    if as_json:
        _print_json(promoted)
        return
    previous = f" (was version {promoted['previous']})" if promoted["previous"] else ""
    gates = f", {len(promoted['gates'])} policy gate(s) passed" if promoted["gates"] and not failed else ""
    typer.echo(f"{promoted['reference']} → version {promoted['version']}{previous}{gates}")
