"""``forge list-plugins``: what is installed and what each plugin contributes."""

from __future__ import annotations

import json

import typer

from forge.contributions import KINDS, singular
from forge.errors import ForgeError
from forge.plugins import get_plugins


def list_plugins(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    kind: str = typer.Option(None, "--kind", help=f"Only one kind: {', '.join(KINDS)}."),
) -> None:
    """List installed plugins, their versions and contributions (broken plugins with their error)."""
    if kind is not None and kind not in KINDS:
        by_singular = {singular(k): k for k in KINDS}
        if kind in by_singular:
            kind = by_singular[kind]
        else:
            raise ForgeError(f"--kind {kind}: unknown kind; choose from {', '.join(KINDS)}")
    plugins = get_plugins()
    rows = []
    for info in plugins.plugins:
        entry = info.as_dict()
        if kind is not None:
            entry["contributions"] = {k: v for k, v in info.contributions.items() if k == kind}
            if not entry["contributions"] and not info.error:
                continue
        if kind is not None or as_json:
            summaries = {
                r.name: r.item.summary for k in entry["contributions"] for r in plugins.all(k) if r.plugin == info.name
            }
            entry["summaries"] = summaries
        rows.append(entry)
    if as_json:
        typer.echo(json.dumps({"plugins": rows}, indent=2))
        return
    if not rows:
        typer.echo(f"no plugin contributes {kind}")
        return
    width = max(len("PLUGIN"), *(len(r["name"]) for r in rows)) + 2
    vwidth = max(len("VERSION"), *(len(r["version"]) for r in rows)) + 2
    typer.echo(f"{'PLUGIN':<{width}}{'VERSION':<{vwidth}}CONTRIBUTES")
    for row in rows:
        if row["error"]:
            what = f"ERROR: {row['error']}"
        elif kind is not None:
            what = ", ".join(
                f"{n}" + (f" — {row['summaries'][n]}" if row["summaries"].get(n) else "")
                for names in row["contributions"].values()
                for n in names
            )
        else:
            what = " · ".join(f"{k}: {', '.join(v)}" for k, v in row["contributions"].items()) or "(nothing)"
        typer.echo(f"{row['name']:<{width}}{row['version']:<{vwidth}}{what}")
