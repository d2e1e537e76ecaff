"""``forge init TEMPLATE DIR``: write a project from a template (all files or none)."""

from __future__ import annotations

from pathlib import Path

import typer

from forge.artifacts import staged_directory
from forge.errors import ForgeError, PluginError
from forge.plugins import get_plugins


def write_project(files: dict[str, str | bytes], target: Path) -> None:
    """Write ``files`` into a new ``target`` directory; on any failure nothing is left behind."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ForgeError(f"{target}: already exists and is not empty; choose a new directory")
    with staged_directory(target) as staging:
        for relative, content in files.items():
            path = staging / relative
            if staging.resolve() not in path.resolve().parents:
                raise PluginError(f"template file {relative!r} points outside the project")
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")


def init(
    template: str = typer.Argument(..., help="Template name (forge list-plugins --kind templates)."),
    directory: Path = typer.Argument(..., help="New project directory."),
) -> None:
    """Create a project from a template. Example: forge init sentiment my-project"""
    chosen = get_plugins().get("templates", template)
    files = dict(chosen.item.render(directory.resolve().name))
    write_project(files, directory)
    typer.echo(f"created {directory} from template {chosen.qualified} ({len(files)} files)")
    if "README.md" in files:
        typer.echo(f"next: see {directory / 'README.md'}")
