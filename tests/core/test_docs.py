"""Docs stay true: every hook, command, option and recipe field is documented; the example plugin shown is the one
that runs."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
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


def _section(text: str, command: str) -> str:
    section = re.search(rf"\n## `forge {re.escape(command)}(?:`| [A-Z\[]).*?(?=\n## |\Z)", text, re.S)
    assert section, f"docs/cli.md has no section for forge {command}"
    return section.group(0)


def _table_options(section: str) -> set[str]:
    """Options named in the first column of the section's option tables."""
    return {o for line in section.splitlines() if line.startswith("| `")
            for o in re.findall(r"(--[a-z][a-z0-9-]*)", line.split("|")[1])}


def test_cli_reference_matches_the_commands():
    """Every command has a section listing each of its options, and no section documents an option that no
    longer exists."""
    import typer
    from forge.cli import _register_builtin_commands, app

    text = (DOCS / "cli.md").read_text()
    _register_builtin_commands()
    group = typer.main.get_command(app)
    commands = {}
    for name, command in group.commands.items():  # a group (forge registry) is documented per subcommand
        subcommands = getattr(command, "commands", None)
        commands.update({f"{name} {sub}": c for sub, c in subcommands.items()} if subcommands else {name: command})
    assert "registry promote" in commands and "data scan" in commands
    for name, command in commands.items():
        real = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]
                if opt.startswith("--") and opt != "--help"}
        section = _section(text, name)
        tabled = _table_options(section)
        assert real - tabled == set(), f"forge {name}: options missing from its table in docs/cli.md"
        assert tabled - real == set(), f"forge {name}: docs/cli.md documents options that do not exist"


def test_recipe_field_tables_are_generated_from_the_config_models():
    result = subprocess.run([sys.executable, str(DOCS / "reference.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


EVERYTHING = "forge_everything"


def _snippet_plugin() -> str:
    text = (DOCS / "writing-plugins.md").read_text()
    section = text[text.index("### What each contribution receives and returns"):text.index("## Names")]
    return "\n\n".join(re.findall(r"```python\n(.*?)```", section, re.S))


def test_a_plugin_written_from_the_docs_snippets_works_for_every_kind(forge_cli):
    """The snippets of writing-plugins.md, pasted into one module, make a plugin whose every contribution runs."""
    forge_cli.site.add("forge-everything", EVERYTHING, source=_snippet_plugin())
    forge_cli.only_site = True
    listed = json.loads(forge_cli("list-plugins", "--json", check=True).stdout)
    plugin = {p["name"]: p for p in listed["plugins"]}["forge-everything"]
    assert plugin["error"] is None
    assert set(plugin["contributions"]) == {"providers", "recipes", "templates", "exporters", "servers",
                                            "evaluators", "commands"}
    forge_cli("init", "echo-project", "proj", check=True)
    forge_cli("run", "--config", "proj/config.yaml", "--provider", "echo", "-o", "run", "--no-tracking", check=True)
    run = forge_cli.cwd / "run"
    manifest = json.loads((run / "forge.json").read_text())
    assert manifest["status"] == "completed" and manifest["provider"]["name"] == "echo"
    assert json.loads((run / "artifact" / "echo.json").read_text()) == {"reply": "PROJ PROJ"}
    forge_cli("export", "run", "--format", "echo-text", "--set", "suffix=.v1", check=True)
    assert (run / "exports" / "echo-text" / "echo.txt").read_text() == "PROJ PROJ.v1\n"
    bad = forge_cli("export", "run", "--format", "echo-text", "--set", "colour=red", "-o", "x")
    assert bad.returncode == 2 and "the echo-text exporter takes suffix" in bad.stderr
    assert not (forge_cli.cwd / "x").exists()
    assert forge_cli("shout", "hello", check=True).stdout.strip() == "HELLO"
    import httpx
    from support import Server

    with Server(forge_cli, "run") as server:
        assert httpx.get(f"{server.url}/echo").json() == {"reply": "PROJ PROJ"}
    # the evaluator through its contract (forge eval runs it the same way)
    code = (f"import forge, json; from pathlib import Path; from {EVERYTHING} import evaluate_echo; "
            "r = evaluate_echo(forge.Artifact.load(Path('run')), forge.EvalRequest(data=None)); "
            "print(json.dumps(r.metrics))")
    out = subprocess.run([sys.executable, "-c", code], cwd=forge_cli.cwd, env=forge_cli._env({}),
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"match": 1.0}


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (DOCS.parent / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (DOCS.parent / ".ci" / "run").read_text()
