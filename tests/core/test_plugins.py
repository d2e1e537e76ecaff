"""Plugin discovery, listing, broken plugins, name resolution."""

from __future__ import annotations

import json

BROKEN_IMPORT = "import forge\nimport no_such_module_here\n"
BROKEN_HOOK = """
import forge

@forge.hookimpl
def register_recipes(register):
    raise RuntimeError("database of recipes is on fire")
"""
MISNAMED_HOOK = """
import forge

@forge.hookimpl
def register_recipe(register):
    pass
"""
CLASH = """
import forge
from forge_testkit import DescentConfig, descent

@forge.hookimpl
def register_recipes(register):
    register(forge.Recipe(name="descent", config=DescentConfig, train=descent))
"""


def test_list_plugins_table_and_json(forge_cli):
    table = forge_cli("list-plugins", check=True).stdout
    assert "forge-core" in table and "forge-testkit" in table
    assert "recipes: descent, load" in table
    data = json.loads(forge_cli("list-plugins", "--json", check=True).stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["forge-testkit"]["version"] == "0.0.1"
    assert by_name["forge-testkit"]["contributions"]["providers"] == ["fast", "picky", "plain"]
    assert by_name["forge-core"]["contributions"] == {"templates": ["plugin"]}
    assert by_name["forge-testkit"]["error"] is None


def test_list_plugins_kind_filter(forge_cli):
    data = json.loads(forge_cli("list-plugins", "--json", "--kind", "exporters", check=True).stdout)
    assert [p["name"] for p in data["plugins"]] == ["forge-testkit"]
    assert data["plugins"][0]["contributions"] == {"exporters": ["text"]}
    out = forge_cli("list-plugins", "--kind", "recipes", check=True).stdout
    assert "descent — 1-D gradient descent" in out and "templates" not in out
    bad = forge_cli("list-plugins", "--kind", "gizmos")
    assert bad.returncode == 2 and "unknown kind" in bad.stderr


def test_plugin_failing_at_import_is_listed_and_others_work(forge_cli):
    forge_cli.site.add("forge-broken", "forge_broken", BROKEN_IMPORT)
    result = forge_cli("list-plugins", "--json")
    assert result.returncode == 0
    broken = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}["forge-broken"]
    assert broken["error"] == "ModuleNotFoundError: No module named 'no_such_module_here'"
    assert "plugin forge-broken failed to load" in result.stderr
    table = forge_cli("list-plugins").stdout
    assert "ERROR: ModuleNotFoundError" in table
    run = forge_cli("run", "--recipe", "descent", "--set", "steps=2", "--no-tracking", "-o", "r")
    assert run.returncode == 0, run.stderr


def test_plugin_raising_in_register_hook(forge_cli):
    forge_cli.site.add("forge-fire", "forge_fire", BROKEN_HOOK)
    result = forge_cli("list-plugins", "--json")
    assert result.returncode == 0
    fire = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}["forge-fire"]
    assert fire["error"] == "RuntimeError: database of recipes is on fire"
    # a command that needs what the broken plugin would have provided says so in one line
    missing = forge_cli("run", "--recipe", "forge-fire:anything")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "forge: error: recipe 'forge-fire:anything' is unavailable: plugin forge-fire failed to load "
        "(RuntimeError: database of recipes is on fire)"
    )
    unknown = forge_cli("run", "--recipe", "mystery")
    assert "not loaded: forge-fire (RuntimeError: database of recipes is on fire)" in unknown.stderr


def test_misnamed_hook_is_reported(forge_cli):
    forge_cli.site.add("forge-typo", "forge_typo", MISNAMED_HOOK)
    data = json.loads(forge_cli("list-plugins", "--json", check=True).stdout)
    typo = {p["name"]: p for p in data["plugins"]}["forge-typo"]
    assert typo["error"] == "PluginError: register_recipe is not a forge hook (did you mean register_recipes?)"


def test_strict_mode_reraises(forge_cli):
    forge_cli.site.add("forge-broken", "forge_broken", BROKEN_IMPORT)
    result = forge_cli("list-plugins", env={"FORGE_STRICT": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "no_such_module_here" in result.stderr


def test_only_named_plugins_load(forge_cli):
    forge_cli.site.add("forge-broken", "forge_broken", BROKEN_IMPORT)
    data = json.loads(forge_cli("list-plugins", "--json", env={"FORGE_PLUGINS": "testkit"}, check=True).stdout)
    assert [p["name"] for p in data["plugins"]] == ["forge-core", "forge-testkit"]
    data = json.loads(forge_cli("list-plugins", "--json", env={"FORGE_PLUGINS": "forge-broken"}).stdout)
    assert [p["name"] for p in data["plugins"]] == ["forge-core", "forge-broken"]


def test_bare_name_claimed_by_two_plugins(forge_cli):
    forge_cli.site.add("forge-clash", "forge_clash", CLASH)
    result = forge_cli("run", "--recipe", "descent", "--no-tracking")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "forge: error: recipe 'descent' is provided by forge-testkit and forge-clash; "
        "name one of them: forge-testkit:descent or forge-clash:descent"
    )
    ok = forge_cli("run", "--recipe", "forge-clash:descent", "--set", "steps=2", "--no-tracking", "-o", "r")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((forge_cli.cwd / "r" / "forge.json").read_text())["recipe"] == "forge-clash:descent"


def test_unknown_names_list_what_is_available(forge_cli):
    cases = {
        ("run", "--recipe", "decent"): "unknown recipe 'decent'; available: descent, load (did you mean 'descent'?)",
        ("run", "--recipe", "load", "--model", "m", "--provider", "turbo"):
            "unknown provider 'turbo'; available: fast, picky, plain",
        ("init", "nothing", "dir"): "unknown template 'nothing'; available: plugin",
    }
    for args, message in cases.items():
        result = forge_cli(*args)
        assert result.returncode == 2, args
        assert result.stderr.strip() == f"forge: error: {message}", args
        assert "Traceback" not in result.stderr
