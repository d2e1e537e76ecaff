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


FAKE_UNSLOTH = '''
"""A test double of the unsloth package (named as such): it records what was imported before it, and refuses to
load like the real one does on a machine without a GPU."""
import json, os, sys
with open(os.environ["FAKE_UNSLOTH_LOG"], "a") as log:
    log.write(json.dumps({"transformers_before": "transformers" in sys.modules,
                          "trl_before": "trl" in sys.modules}) + "\\n")


class FastLanguageModel:
    @staticmethod
    def from_pretrained(**kwargs):
        raise RuntimeError("fake unsloth: no GPU here")
'''


@pytest.fixture
def fake_unsloth(forge_cli, tmp_path):
    """Install the test double as `unsloth` and let forge try it (as FORGE_UNSLOTH_TRY_CPU=1 allows)."""
    (forge_cli.site.root / "unsloth.py").write_text(FAKE_UNSLOTH)
    log = tmp_path / "unsloth-imports.jsonl"
    return {"FORGE_UNSLOTH_TRY_CPU": "1", "FAKE_UNSLOTH_LOG": str(log)}, log


@pytest.mark.skipif(UNSLOTH_INSTALLED, reason="the real unsloth is installed: the test double would not be imported")
def test_unsloth_is_imported_before_transformers_and_trl(forge_cli, tiny_lm, fake_unsloth):
    env, log = fake_unsloth
    data = write_chat(forge_cli.cwd / "c.jsonl")
    forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=1",
              "--set", "eval_split=0", "-o", "r", "--no-tracking", env=env, check=True)
    imports = [json.loads(line) for line in log.read_text().splitlines()]
    assert imports == [{"transformers_before": False, "trl_before": False}]
    provider = manifest(forge_cli.cwd / "r")["provider"]
    assert provider["name"] == "hf" and "fake unsloth: no GPU here" in provider["fallback_from"]["unsloth"]


@pytest.mark.skipif(UNSLOTH_INSTALLED, reason="the real unsloth is installed: the test double would not be imported")
def test_grpo_is_routed_to_hf_with_the_reason_recorded(forge_cli, tiny_lm, fake_unsloth):
    env, log = fake_unsloth
    prompts = forge_cli.cwd / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"say {w}"}) + "\n" for w in ["a", "b", "c", "d"]))
    forge_cli("run", "--recipe", "grpo", "--model", tiny_lm, "--data", prompts, "--set", "max_steps=1",
              "--set", "num_generations=2", "--set", "per_device_train_batch_size=2",
              "--set", "max_completion_length=4", "-o", "g", "--no-tracking", env=env, check=True)
    provider = manifest(forge_cli.cwd / "g")["provider"]
    assert provider["name"] == "hf"
    assert provider["fallback_from"]["unsloth"].startswith("forge routes grpo to hf")
    assert not log.exists()  # routed before Unsloth was even imported
