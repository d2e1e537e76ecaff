"""forge export / serve / init / env dispatch, the `plugin` template, and plugin-contributed commands."""

from __future__ import annotations

import json
import subprocess
import sys


def test_export_dispatches_by_kind(forge_cli):
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r", "--no-tracking", check=True)
    result = forge_cli("export", "r", "--format", "text", check=True)
    out = forge_cli.cwd / "r" / "exports" / "text"
    assert result.stdout.strip() == f"exported r → {out.relative_to(forge_cli.cwd)}"
    manifest = json.loads((out / "forge.json").read_text())
    assert manifest["kind"] == "scalar-text" and manifest["exporter"] == "forge-testkit:text"
    assert manifest["parent"]["kind"] == "scalar" and manifest["digits"] == 6
    assert manifest["files"] == [{"path": "weight.txt", "bytes": 9}]
    # the exported artifact is itself an artifact, but no exporter takes its kind
    again = forge_cli("export", out, "--format", "text")
    assert again.returncode == 2
    assert again.stderr.strip() == ("forge: error: --format text: exporter forge-testkit:text does not take "
                                    "scalar-text artifacts (it takes scalar); formats for scalar-text: none")


def test_export_of_unfinished_run_and_failing_exporter_leave_nothing(forge_cli):
    proc = forge_cli.popen("run", "--recipe", "descent", "--set", "steps=100", "--set", "step_seconds=0.05",
                           "-o", "r", "--no-tracking")
    import time

    while not (forge_cli.cwd / "r" / "forge.json").exists():
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    result = forge_cli("export", "r", "--format", "text")
    assert result.returncode == 2 and "run is running, not completed; it has no artifact yet" in result.stderr
    forge_cli.site.add("forge-badexport", "forge_badexport", """
        import forge
        from forge.errors import ForgeError

        def export(artifact, output_dir, options):
            (output_dir / "half.bin").write_bytes(b"partial")
            raise ForgeError("parity check failed: max abs diff 0.3 > 0.01")

        @forge.hookimpl
        def register_exporters(register):
            register(forge.Exporter(name="bad", accepts=("scalar",), export=export))
        """)
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "ok", "--no-tracking", check=True)
    bad = forge_cli("export", "ok", "--format", "bad")
    assert bad.returncode == 2 and "parity check failed" in bad.stderr
    assert not (forge_cli.cwd / "ok" / "exports").exists() or not any((forge_cli.cwd / "ok" / "exports").iterdir())


def test_serve_without_a_server_for_the_kind(forge_cli):
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r", "--no-tracking", check=True)
    result = forge_cli("serve", "r")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("forge: error: no server for scalar artifacts")


def test_env_reports_versions(forge_cli):
    info = json.loads(forge_cli("env", "--json", check=True).stdout)
    assert info["forge"] == "0.1.0" and info["plugins"]["forge-testkit"] == "0.0.1"
    assert info["libraries"]["pluggy"] and set(info["accelerators"]) >= {"cuda", "mps"}
    assert "python" in forge_cli("env", check=True).stdout


def test_plugin_contributed_command(forge_cli):
    forge_cli.site.add("forge-hello", "forge_hello", """
        import forge
        import typer

        def greet(name: str = typer.Argument("world")):
            \"\"\"Say hello.\"\"\"
            typer.echo(f"hello {name}")

        @forge.hookimpl
        def register_commands(register):
            register(greet, name="greet")
        """)
    assert forge_cli("greet", "forge", check=True).stdout == "hello forge\n"
    assert "greet" in forge_cli("--help", check=True).stdout


def test_plugin_template_scaffolds_an_installable_plugin(forge_cli, tmp_path):
    forge_cli("init", "plugin", "forge-wordcount", check=True)
    project = forge_cli.cwd / "forge-wordcount"
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == [
        "README.md", "forge_wordcount.py", "pyproject.toml", "tests/test_forge_wordcount.py"]
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(project)], check=True, capture_output=True)
    env = {"PYTHONPATH": f"{target}:{forge_cli.env['PYTHONPATH']}"}
    listed = json.loads(forge_cli("list-plugins", "--json", env={**env, "FORGE_PLUGINS": "wordcount"},
                                  check=True).stdout)
    plugin = {p["name"]: p for p in listed["plugins"]}["forge-wordcount"]
    assert plugin["contributions"] == {"recipes": ["wordcount"]} and plugin["version"] == "0.1.0"
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
                           cwd=project, env={**forge_cli.env, **env}, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
