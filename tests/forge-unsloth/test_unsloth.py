"""forge-unsloth: selection and fallback, manifest records, the CPU end-to-end runs, and a real attempt by Unsloth
itself on this GPU-less machine."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

CHAT = [{"messages": [{"role": "user", "content": f"capital of {c}?"},
                      {"role": "assistant", "content": f"{p}."}]}
        for c, p in [("france", "paris"), ("spain", "madrid"), ("peru", "lima")] * 3]
UNSLOTH_INSTALLED = importlib.util.find_spec("unsloth") is not None


def reason() -> str | None:
    out = subprocess.run([sys.executable, "-c", "from forge_unsloth.availability import unavailable_reason as r; "
                          "print(r() or '')"], capture_output=True, text=True, check=True)
    return out.stdout.strip() or None


def manifest(run):
    return json.loads((run / "forge.json").read_text())


def write_chat(path):
    path.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    return path


def test_listed_as_a_provider(forge_cli):
    data = json.loads(forge_cli("list-plugins", "--json", "--kind", "providers", check=True).stdout)
    assert {p["name"]: p for p in data["plugins"]}["forge-unsloth"]["contributions"] == {"providers": ["unsloth"]}


@pytest.mark.skipif(reason() is None, reason="Unsloth can run on this machine (GPU): fallback not exercised")
def test_qlora_falls_back_to_hf_and_records_why(forge_cli, tiny_lm):
    why = reason()
    data = write_chat(forge_cli.cwd / "c.jsonl")
    result = forge_cli("run", "--recipe", "qlora", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
                       "--set", "eval_split=0", "--set", "lora_target_modules=[q_proj,v_proj]", "-o", "r",
                       "--no-tracking", check=True)
    assert f"provider unsloth skipped: {why}" in result.stderr
    provider = manifest(forge_cli.cwd / "r")["provider"]
    assert provider["name"] == "hf" and provider["requested"] == "auto"
    assert provider["skipped"] == {"unsloth": why} and provider["quantization"] == "nf4-4bit"


@pytest.mark.skipif(reason() is None, reason="Unsloth can run on this machine (GPU)")
def test_naming_unsloth_where_it_cannot_run_is_one_line(forge_cli, tiny_lm):
    result = forge_cli("run", "--recipe", "sft", "--provider", "unsloth", "--model", tiny_lm, "--no-tracking")
    assert result.returncode == 2
    assert result.stderr.strip() == f"forge: error: provider unsloth cannot run here: {reason()}"


@pytest.mark.skipif(not UNSLOTH_INSTALLED or reason() is None, reason="needs unsloth installed on a GPU-less host")
def test_unsloth_itself_refuses_this_cpu_and_says_so(forge_cli, tiny_lm):
    """Skip forge's cheap check and let the real Unsloth try on this CPU: its refusal becomes one line."""
    data = write_chat(forge_cli.cwd / "c.jsonl")
    env = {"FORGE_UNSLOTH_TRY_CPU": "1"}
    named = forge_cli("run", "--recipe", "qlora", "--provider", "unsloth", "--model", tiny_lm, "--data", data,
                      "--set", "max_steps=1", "-o", "named", "--no-tracking", env=env, timeout=600)
    assert named.returncode == 2, named.stderr
    last = named.stderr.strip().splitlines()[-1]
    assert last.startswith(f"forge: error: provider unsloth cannot run this: unsloth could not load {tiny_lm}: ")
    assert "Traceback" not in named.stderr
    assert manifest(forge_cli.cwd / "named")["status"] == "failed"
    # not named: the same refusal, then the run falls back to hf and finishes
    auto = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=1",
                     "--set", "eval_split=0", "-o", "auto", "--no-tracking", env=env, check=True, timeout=600)
    provider = manifest(forge_cli.cwd / "auto")["provider"]
    assert provider["name"] == "hf"
    assert provider["fallback_from"]["unsloth"].startswith(f"unsloth could not load {tiny_lm}: ")
    assert "falling back" in auto.stderr


def test_importing_the_plugin_never_imports_unsloth_or_torch():
    code = ("import sys, forge_unsloth, forge_unsloth.availability as a; a.unavailable_reason(); "
            "print(sorted(m for m in ('unsloth', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
