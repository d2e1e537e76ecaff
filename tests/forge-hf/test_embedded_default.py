"""The README's main job: sft on the packaged SmolLM2-135M-Instruct and the packaged example chat data, tracked to
MLflow, merged, and served to the official openai client. Also the chat-sft template end to end."""

from __future__ import annotations

import json

import pytest
from support import Server
from test_sft import manifest

pytestmark = pytest.mark.slow


def test_smollm2_sft_track_merge_serve(forge_cli, mlflow_uri):
    forge_cli("run", "--recipe", "sft", "--set", "max_steps=3", "--set", "logging_steps=1", "--set", "save_steps=3",
              "-o", "run", check=True, timeout=900)
    run = forge_cli.cwd / "run"
    m = manifest(run)
    assert m["status"] == "completed"
    assert m["config"]["model"] == "smollm2-135m-instruct"
    assert m["config"]["data"].endswith("forge_hf/example_data/chat.jsonl")
    assert m["provider"]["alias"] == "smollm2-135m-instruct" and m["provider"]["source"] == "alias"
    assert m["dataset"]["train_records"] == 58 and m["dataset"]["eval_records"] == 6
    from mlflow.tracking import MlflowClient

    history = MlflowClient(mlflow_uri).get_metric_history(m["mlflow"]["run_id"], "loss")
    assert sorted(h.step for h in history) == [1, 2, 3]
    forge_cli("export", run, "--format", "merged", check=True, timeout=600)
    merged = run / "exports" / "merged"
    assert json.loads((merged / "forge.json").read_text())["kind"] == "causal-lm"
    from openai import OpenAI

    with Server(forge_cli, merged) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="-")
        reply = client.chat.completions.create(
            model=client.models.list().data[0].id,
            messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=12, temperature=0)
        assert "Paris" in reply.choices[0].message.content


def test_chat_sft_template_trains(forge_cli, tiny_lm):
    forge_cli("init", "chat-sft", "proj", check=True)
    project = forge_cli.cwd / "proj"
    assert sorted(p.name for p in project.iterdir()) == [".gitignore", "README.md", "config.yaml", "data"]
    assert (project / "config.yaml").read_text().startswith("# Fine-tune SmolLM2")
    forge_cli("run", "--config", "config.yaml", "--model", tiny_lm, "--set", "max_steps=2", "-o", "r",
              "--no-tracking", cwd=project, check=True)
    m = manifest(project / "r")
    assert m["status"] == "completed" and m["config"]["data"] == str(project / "data" / "train.jsonl")
    again = forge_cli("init", "chat-sft", "proj")
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
