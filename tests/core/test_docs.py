"""Docs stay true: every hook, command, option and recipe field is documented; the example plugin shown is the one
that runs."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

from forge import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_hook_is_documented_for_plugin_authors():
    text = (DOCS / "writing-plugins.md").read_text()
    hooks = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]
    assert len(hooks) == 7
    for hook in hooks:
        assert f"`{hook}(register)`" in text, hook
        assert getattr(hookspecs, hook).__doc__, hook


def test_writing_plugins_shows_the_example_plugin_whole():
    text = (DOCS / "writing-plugins.md").read_text()
    module = (DOCS / "example-plugin" / "forge_bigram.py").read_text()
    assert f"```python\n{module}```" in text
    assert f"```toml\n{(DOCS / 'example-plugin' / 'pyproject.toml').read_text()}```" in text
    assert len(module.splitlines()) < 40


def test_example_plugin_runs_end_to_end(tmp_path):
    """The docs' example plugin is installed in the dev set-up; run it as a user would."""
    import subprocess
    import sys

    (tmp_path / "notes.txt").write_text("the cat sat on the mat\nthe dog sat on the log\na cat\nthe mat\nthe cat\n")
    subprocess.run([sys.executable, "-m", "forge", "run", "--recipe", "bigram", "--data", "notes.txt",
                    "--no-tracking", "-o", "run"], cwd=tmp_path, check=True, capture_output=True)
    manifest = json.loads((tmp_path / "run" / "forge.json").read_text())
    assert manifest["status"] == "completed" and manifest["recipe"] == "forge-bigram:bigram"
    assert 1 < manifest["metrics"]["heldout_perplexity"] < 30
    bad = subprocess.run([sys.executable, "-m", "forge", "run", "--recipe", "bigram", "--data", "notes.txt",
                          "--set", "holdout=lots", "--dry-run"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "--set holdout=lots: holdout: Input should be a valid number" in bad.stderr


def test_cli_reference_covers_every_command_and_option():
    import typer
    from forge.cli import _register_builtin_commands, app

    text = (DOCS / "cli.md").read_text()
    _register_builtin_commands()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `forge {name}" in text, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in text, f"{name} {opt}"


def test_every_recipe_field_is_documented():
    from forge.plugins import load_plugins

    text = (DOCS / "recipes.md").read_text()
    recipes = load_plugins().all("recipes")
    shipped = [r for r in recipes if r.plugin in ("forge-hf", "forge-timeseries")]
    assert {r.name for r in shipped} == {"sft", "qlora", "dpo", "grpo", "classify", "lstm-forecast",
                                            "stat-forecast"}
    for recipe in shipped:
        section = re.search(rf"## `{re.escape(recipe.name)}`(.*?)(\n## |\Z)", text, re.S)
        assert section, recipe.name
        for field in recipe.item.config_model().model_fields:
            assert f"`{field}`" in text, f"{recipe.name}.{field}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (DOCS.parent / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (DOCS.parent / ".ci" / "run").read_text()
