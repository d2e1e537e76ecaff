"""Provider selection: by name, best available, fallback recorded in the manifest."""

from __future__ import annotations

import json


def test_best_available_provider_with_fallback_recorded(forge_cli):
    result = forge_cli("run", "--recipe", "load", "--model", "m1", "-o", "r", "--no-tracking", check=True)
    provider = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())["provider"]
    # fast is unavailable here, picky refuses the load at run time, plain loads
    assert provider == {
        "name": "plain",
        "plugin": "forge-testkit",
        "requested": "auto",
        "skipped": {"fast": "no accelerator for 'fast' on this machine"},
        "fallback_from": {"picky": "picky loads nothing on CPU"},
        "source": "m1",
    }
    assert "provider fast skipped: no accelerator for 'fast' on this machine" in result.stderr
    assert "provider picky cannot run this (picky loads nothing on CPU); falling back" in result.stderr


def test_named_provider_that_cannot_run_is_one_line(forge_cli):
    result = forge_cli("run", "--recipe", "load", "--model", "m1", "--provider", "fast", "--no-tracking")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "forge: error: provider fast cannot run here: no accelerator for 'fast' on this machine"
    )
    result = forge_cli("run", "--recipe", "load", "--model", "m1", "--provider", "picky", "-o", "r",
                       "--no-tracking")
    assert result.returncode == 2
    assert "forge: error: provider picky cannot run this: picky loads nothing on CPU" in result.stderr
    assert json.loads((forge_cli.cwd / "r" / "forge.json").read_text())["status"] == "failed"


def test_named_provider_is_used(forge_cli):
    forge_cli("run", "--recipe", "load", "--model", "m1", "--provider", "forge-testkit:plain", "-o", "r",
              "--no-tracking", check=True)
    provider = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())["provider"]
    assert provider["name"] == "plain" and provider["requested"] == "forge-testkit:plain"
    assert "fallback_from" not in provider


def test_provider_flag_for_a_recipe_without_models(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--provider", "plain")
    assert result.returncode == 2
    assert "recipe descent does not load models through a provider" in result.stderr
