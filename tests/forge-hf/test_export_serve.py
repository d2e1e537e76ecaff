"""Merged export and the OpenAI-compatible server, driven by the official openai client over loopback."""

from __future__ import annotations

import json

import httpx
import pytest
from support import Server
from test_sft import CHAT, write_jsonl


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_lm, mlflow_uri):
    """One LoRA run shared by this module's tests."""
    import os
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("trained")
    data = write_jsonl(work / "chat.jsonl", CHAT)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    subprocess.run([sys.executable, "-m", "forge", "run", "--recipe", "sft", "--model", str(tiny_lm), "--data",
                    str(data), "--set", "max_steps=3", "--set", "eval_split=0", "-o", str(work / "run"),
                    "--no-tracking"], check=True, cwd=work, env=env, capture_output=True)
    return work / "run"


def test_merged_export_loads_in_plain_transformers(forge_cli, trained):
    out = forge_cli.cwd / "merged"
    forge_cli("export", trained, "--format", "merged", "--output", out, check=True)
    manifest = json.loads((out / "forge.json").read_text())
    assert manifest["kind"] == "causal-lm" and manifest["exporter"] == "forge-hf:merged"
    assert manifest["parent"]["kind"] == "causal-lm-adapter"
    assert manifest["parity"]["max_abs_logit_diff"] < 1e-3
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("the capital of", return_tensors="pt")
    with torch.inference_mode():
        generated = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 4 or generated[0, -1] == tokenizer.eos_token_id
    assert not any(p.name.startswith("adapter") for p in out.iterdir())


def test_export_errors(forge_cli, trained):
    bad = forge_cli("export", trained, "--format", "onnx-ish")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("forge: error: unknown export format 'onnx-ish'; for a causal-lm-adapter "
                                         "artifact: gguf, merged")
    missing = forge_cli("export", forge_cli.cwd / "nope", "--format", "merged")
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    forge_cli("export", trained, "--format", "merged", "--output", "m", check=True)
    again = forge_cli("export", trained, "--format", "merged", "--output", "m")
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr


def test_openai_client_against_real_server(forge_cli, trained):
    from openai import OpenAI

    with Server(forge_cli, trained) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        models = client.models.list()
        model_id = models.data[0].id
        chat = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "what is the capital of france?"}],
            max_tokens=5, temperature=0)
        assert chat.choices[0].message.role == "assistant"
        assert chat.usage.completion_tokens <= 5 and chat.usage.prompt_tokens > 5
        assert chat.choices[0].finish_reason in ("stop", "length")
        again = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "what is the capital of france?"}],
            max_tokens=5, temperature=0)
        assert again.choices[0].message.content == chat.choices[0].message.content  # greedy is deterministic
        stream = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "what is the capital of france?"}],
            max_tokens=5, temperature=0, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream)
        assert streamed == chat.choices[0].message.content
        completion = client.completions.create(model=model_id, prompt="the capital of", max_tokens=3, temperature=0)
        assert completion.object == "text_completion" and completion.usage.completion_tokens <= 3
        # bad requests: OpenAI-style errors
        import openai

        with pytest.raises(openai.UnprocessableEntityError) as err:
            client.chat.completions.create(model=model_id, messages=[], max_tokens=3)
        assert "messages" in str(err.value)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        assert 'path="/v1/chat/completions",status="200"' in httpx.get(f"{server.url}/metrics").text


def test_api_key_and_body_limit(forge_cli, trained):
    from openai import AuthenticationError, OpenAI

    with Server(forge_cli, trained, "--api-key", "s3cret", "--max-body-bytes", "2000") as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{server.url}/v1", api_key="wrong").models.list()
        ok = OpenAI(base_url=f"{server.url}/v1", api_key="s3cret").models.list()
        assert len(ok.data) == 1
        big = httpx.post(f"{server.url}/v1/completions", headers={"Authorization": "Bearer s3cret"},
                         json={"prompt": "x" * 5000})
        assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"


def test_serve_errors(forge_cli, trained, tmp_path):
    nothing = forge_cli("serve", tmp_path)
    assert nothing.returncode == 2 and "not a forge run or artifact" in nothing.stderr
    wrong = forge_cli("serve", trained, "--server", "nope")
    assert wrong.returncode == 2 and "unknown server 'nope'" in wrong.stderr
