"""``forge serve --engine vllm`` (issue 17): the refusals through the real CLI, the ``vllm serve`` command line forge
builds (checked against the flag names of vLLM 0.33's source: ``vllm/entrypoints/common/cli_args.py``,
``vllm/engine/arg_utils.py``, ``vllm/envs.py``), the key middleware, and the launcher end to end against a stand-in
``vllm`` package. vLLM itself is never started here: it is not installed on the test machines and needs a CUDA GPU,
so the launch of a real vLLM server is untested in this project so far."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from forge.serving.settings import ServeSettings
from forge_hf.serve_vllm import PLAIN_CHAT_TEMPLATE, RequireKey, has_chat_template, vllm_command

# A stand-in for vLLM: `python -m vllm.entrypoints.cli.main ...` records its argv and environment, then exits with
# FAKE_VLLM_EXIT, or with FAKE_VLLM_WAIT waits for SIGTERM and exits 3 after recording it.
FAKE_MAIN = textwrap.dedent('''
    import json, os, signal, sys, time
    record = os.environ["FAKE_VLLM_RECORD"]
    def write(**extra):
        with open(record + ".tmp", "w") as f:
            json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
                                                     if k.startswith(("VLLM_", "FORGE_"))}, **extra}, f)
        os.replace(record + ".tmp", record)
    if os.environ.get("FAKE_VLLM_WAIT"):
        def stop(signum, frame):
            write(signal=signum)
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)
        write(signal=None)
        time.sleep(60)
        sys.exit(9)
    write()
    sys.exit(int(os.environ.get("FAKE_VLLM_EXIT", "0")))
''')


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    root = tmp_path / "fake-vllm"
    cli = root / "vllm" / "entrypoints" / "cli"
    cli.mkdir(parents=True)
    for package in (root / "vllm", root / "vllm" / "entrypoints", cli):
        (package / "__init__.py").write_text("")
    (cli / "main.py").write_text(FAKE_MAIN)
    return root


def artifact(tmp_path: Path, name: str, kind: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "forge.json").write_text(json.dumps({"schema": 1, "type": "artifact", "kind": kind, "base_model": "b"}))
    return path


def test_refusals_are_one_line_exit_2(forge_cli, tmp_path, fake_vllm):
    lm = artifact(tmp_path, "lm", "causal-lm")
    classifier = artifact(tmp_path, "clf", "sequence-classifier")
    cases = [
        ((classifier, "--engine", "vllm"), {}, "--engine vllm does not serve sequence-classifier artifacts "
                                              "(it serves causal-lm, causal-lm-adapter)"),
        ((lm, "--engine", "vllm", "--max-queue", "8"), {}, "--max-queue: does not apply to --engine vllm"),
        ((lm, "--engine", "gpu"), {}, "--engine gpu: expected forge or vllm"),
        ((lm, "--max-model-len", "512"), {}, "--max-model-len: only with --engine vllm"),
        ((lm, "--engine", "vllm"), {}, "--engine vllm needs vLLM, which is not installed here: pip install vllm "
                                       "(it needs a CUDA GPU"),
        # vllm importable (the stand-in), no GPU on this machine, no test hook: the CUDA check answers
        ((lm, "--engine", "vllm"), {"PYTHONPATH": f"{fake_vllm}:{forge_cli.env['PYTHONPATH']}"},
         "--engine vllm: no CUDA GPU visible (torch.cuda.is_available() is false)"),
    ]
    for args, env, message in cases:
        result = forge_cli("serve", *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_command_for_a_merged_adapter_maps_forge_settings(tmp_path):
    """An adapter is served from its merged copy (``merged_model``): the model directory, forge's model name, the
    flags vLLM has an equivalent for; the key only in the environment."""
    settings = ServeSettings(host="0.0.0.0", port=9000, api_key="s3cret", grace_s=2.5, keep_alive_s=0.5,
                             max_batch_size=32, max_model_len=2048)
    merged = tmp_path / "cache" / "vllm" / "sft-1-0123456789abcdef"
    command = vllm_command(merged, "sft-1/artifact", settings, frozenset({"--max-batch-size"}), dtype="bfloat16",
                           python="/py")
    assert command.argv == [
        "/py", "-m", "vllm.entrypoints.cli.main", "serve", str(merged), "--served-model-name", "sft-1/artifact",
        "--host", "0.0.0.0", "--port", "9000", "--dtype", "bfloat16", "--shutdown-timeout", "3",
        "--max-model-len", "2048", "--max-num-seqs", "32", "--middleware", "forge_hf.serve_vllm.RequireKey"]
    assert "s3cret" not in " ".join(command.argv) and "s3cret" not in command.shown()
    env = command.environment({"FORGE_API_KEY": "s3cret", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "VLLM_API_KEY": "s3cret", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1"}


def test_command_for_a_merged_export_keeps_vllm_defaults(tmp_path):
    """No key: no middleware, a stray VLLM_API_KEY removed; --max-batch-size left to vLLM unless given; a model
    without a chat template gets forge's plain prompt as one."""
    model = tmp_path / "exports" / "merged"
    model.mkdir(parents=True)
    (model / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8192}))
    assert not has_chat_template(model)
    command = vllm_command(model, "HuggingFaceTB/SmolLM2-135M-Instruct", ServeSettings(), frozenset(),
                           chat_template=PLAIN_CHAT_TEMPLATE, python="/py")
    assert command.argv == [
        "/py", "-m", "vllm.entrypoints.cli.main", "serve", str(model), "--served-model-name",
        "HuggingFaceTB/SmolLM2-135M-Instruct", "--host", "127.0.0.1", "--port", "8000", "--dtype", "auto",
        "--shutdown-timeout", "5", "--chat-template", PLAIN_CHAT_TEMPLATE]
    assert command.environment({"VLLM_API_KEY": "stray"}) == {"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "5"}
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert has_chat_template(model)
    from forge_hf.serve_lm import plain_chat_prompt
    from jinja2 import Environment
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert Environment().from_string(PLAIN_CHAT_TEMPLATE).render(messages=messages) == plain_chat_prompt(messages)


def test_require_key_guards_every_path_but_health():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    inner = Starlette(routes=[Route(p, lambda request: PlainTextResponse("ok"))
                              for p in ("/health", "/invocations", "/docs", "/v1/models")])
    import os

    os.environ["VLLM_API_KEY"] = "k3y"
    try:
        client = TestClient(RequireKey(inner))
    finally:
        del os.environ["VLLM_API_KEY"]
    assert client.get("/health").status_code == 200
    for path in ("/invocations", "/docs", "/v1/models"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get(path, headers={"Authorization": "bearer k3y"}).status_code == 200
    assert client.get("/docs", headers={"X-API-Key": "k3y"}).status_code == 401  # vLLM's own check takes Bearer only


def test_a_child_ended_by_a_signal_gives_128_plus_its_number():
    from forge_hf.serve_vllm import VllmCommand, run_child

    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run_child(VllmCommand([sys.executable, "-c", kill_self], {})) == 128 + signal.SIGKILL
    assert run_child(VllmCommand([sys.executable, "-c", "raise SystemExit(5)"], {})) == 5


def test_launcher_end_to_end_on_a_stand_in_vllm(forge_cli, tiny_sft_run, fake_vllm, tmp_path):
    """The real wiring with a stand-in vLLM: the adapter merged once into the cache, the child started with forge's
    model name and the key in its environment only, SIGTERM forwarded to it and its exit code returned; the second
    start reuses the merged weights. FORGE_TEST_ASSUME_CUDA is the launcher's test-only hook past the CUDA check."""
    record = tmp_path / "record.json"
    env = {"PYTHONPATH": f"{fake_vllm}:{forge_cli.env['PYTHONPATH']}", "FORGE_TEST_ASSUME_CUDA": "1",
           "FORGE_CACHE_DIR": str(tmp_path / "cache"), "FAKE_VLLM_RECORD": str(record), "FORGE_API_KEY": "s3cret",
           "FAKE_VLLM_WAIT": "1", "VLLM_API_KEY": "stray"}
    process = forge_cli.popen("serve", tiny_sft_run, "--engine", "vllm", "--port", "8123", env=env)
    deadline = time.time() + 120
    while not record.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 3, stderr  # the child's own exit code
    seen = json.loads(record.read_text())
    assert seen["signal"] == signal.SIGTERM
    merged = Path(seen["argv"][1])
    assert merged.parent == tmp_path / "cache" / "vllm" and (merged / "config.json").is_file()
    assert json.loads((merged / "forge.json").read_text())["kind"] == "causal-lm"
    assert seen["argv"][0] == "serve" and seen["argv"][2:4] == ["--served-model-name", "run/artifact"]
    assert "--chat-template" not in seen["argv"]  # the tiny model has its own
    assert seen["argv"][-2:] == ["--middleware", "forge_hf.serve_vllm.RequireKey"]
    assert seen["env"]["VLLM_API_KEY"] == "s3cret" and "FORGE_API_KEY" not in seen["env"]
    assert "s3cret" not in stderr and "VLLM_API_KEY=***" in stderr and "merging the adapter" in stderr

    again = forge_cli("serve", tiny_sft_run, "--engine", "vllm",
                      env={**env, "FAKE_VLLM_WAIT": "", "FAKE_VLLM_EXIT": "7"})
    assert again.returncode == 7, again.stderr
    assert f"using the merged weights in {merged}" in again.stderr
    assert json.loads(record.read_text())["argv"][1] == str(merged)
