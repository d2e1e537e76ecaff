"""Data formats (issue 10): detection, mapping onto the recipes' schema, file:line problems, bad inputs, and the
same checks at ``forge run --dry-run`` as at run time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from forge.errors import DataError
from forge_hf import training_data as td

USER_ASSISTANT = [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "5"}]

SFT_RECORDS = {
    "chat": {"messages": [{"role": "system", "content": "be brief"}, *USER_ASSISTANT]},
    "sharegpt": {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "2+3?"},
                                   {"from": "gpt", "value": "5"}]},
    "alpaca": {"instruction": "add", "input": "2 and 3", "output": "5"},
    "input-output": {"input": "2+3?", "output": "5"},
    "prompt-completion": {"prompt": "2+3?", "completion": " 5"},
    "text": {"text": "2+3 is 5"},
}

TOOLS = {"messages": [
    {"role": "system", "content": "you can call tools"},
    {"role": "user", "content": "weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"},
    {"role": "assistant", "content": [{"type": "text", "text": "21 degrees."}]},
]}


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("fmt", list(SFT_RECORDS))
def test_each_sft_format_is_detected_and_mapped(tmp_path, fmt):
    data = write_jsonl(tmp_path / "d.jsonl", [SFT_RECORDS[fmt]] * 3)
    loaded = td.load(str(data), "sft")
    assert loaded.format == fmt and loaded.count == 3
    assert loaded.summary() == f"3 records, format {fmt}, from d.jsonl"
    record = loaded.records[0]
    if fmt in ("chat", "sharegpt"):
        assert record == {"messages": [{"role": "system", "content": "be brief"}, *USER_ASSISTANT]}
    elif fmt == "alpaca":
        assert record["messages"] == [{"role": "user", "content": "add\n\n2 and 3"},
                                      {"role": "assistant", "content": "5"}]
    elif fmt == "input-output":
        assert record["messages"] == USER_ASSISTANT
    elif fmt == "prompt-completion":
        assert record == {"prompt": "2+3?", "completion": " 5"}
    else:
        assert record == {"text": "2+3 is 5"}


def test_alpaca_without_input_and_with_system():
    out = td.normalize({"instruction": "say hi", "input": "", "output": "hi", "system": "be nice"}, "alpaca")
    assert out["messages"] == [{"role": "system", "content": "be nice"}, {"role": "user", "content": "say hi"},
                               {"role": "assistant", "content": "hi"}]


def test_tool_calls_and_content_parts():
    out = td.normalize(TOOLS, "chat")["messages"]
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool", "assistant"]
    assert out[2]["content"] == '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert out[4]["content"] == "21 degrees."
    prompt_completion = td.to_prompt_completion({"messages": out})
    assert prompt_completion["completion"] == [out[-1]] and len(prompt_completion["prompt"]) == 4


@pytest.mark.parametrize(("record", "fmt", "problem"), [
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}, "chat",
     "messages message 2 has unknown role 'wizard' (expected system, user, assistant, tool)"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}, "chat",
     "messages message 2 (assistant turn) is empty"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]}, "chat",
     "messages message 2 (assistant turn) is empty"),
    ({"messages": USER_ASSISTANT[:1]}, "chat",
     "the last message must be the assistant's (it is what the model learns to write), got 'user'"),
    ({"messages": [*USER_ASSISTANT, {"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}]},
     "chat", "message 3 has a tool call without a function name"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "yo"}]}, "sharegpt",
     "conversations turn 2 has unknown 'from' 'bot' (expected human, user, gpt, assistant, chatgpt, system, tool, "
     "observation, function_call)"),
    ({"conversations": [{"from": "gpt", "value": "yo"}, {"from": "human", "value": "hi"}]}, "sharegpt",
     "the last message must be the assistant's (it is what the model learns to write), got 'user'"),
    ({"instruction": "add", "output": ""}, "alpaca", "field 'output' is empty"),
    ({"instruction": "add", "input": 3, "output": "5"}, "alpaca", "field 'input' must be text, got int"),
    ({"input": "a"}, "input-output", "missing field 'output'"),
    ({"prompt": "a", "completion": [{"role": "assistant", "content": "b"}]}, "prompt-completion",
     "'prompt' and 'completion' must both be strings or both be message lists"),
])
def test_problems(record, fmt, problem):
    with pytest.raises(td.Problem) as caught:
        td.normalize(record, fmt)
    assert str(caught.value) == problem


def test_problems_name_file_and_line_all_of_them(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [SFT_RECORDS["chat"], {"messages": USER_ASSISTANT[:1]},
                                              SFT_RECORDS["chat"], {"messages": [{"role": "x", "content": "y"}]}])
    with pytest.raises(DataError) as caught:
        td.load(str(data), "sft")
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == [f"{data}:2", f"{data}:4"]


def test_format_override(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"input": "q", "output": "a", "text": "t"}])
    assert td.load(str(data), "sft").format == "input-output"
    assert td.load(str(data), "sft", "text").records == [{"text": "t"}]
    with pytest.raises(DataError, match=r"d.jsonl:1: missing field 'messages'"):
        td.load(str(data), "sft", "chat")


def test_preference_formats(tmp_path):
    strings = {"prompt": "2+3?", "chosen": "5", "rejected": "6"}
    messages = {"prompt": USER_ASSISTANT[:1], "chosen": [USER_ASSISTANT[1]],
                "rejected": [{"role": "assistant", "content": "6"}]}
    pair = {"chosen": USER_ASSISTANT, "rejected": [USER_ASSISTANT[0], {"role": "assistant", "content": "6"}]}
    for record, fmt in ((strings, "preference"), (messages, "preference"), (pair, "chat-pair")):
        loaded = td.load(str(write_jsonl(tmp_path / "p.jsonl", [record])), "preference")
        assert loaded.format == fmt
    assert loaded.records[0] == {"prompt": USER_ASSISTANT[:1], "chosen": [USER_ASSISTANT[1]],
                                 "rejected": [{"role": "assistant", "content": "6"}]}
    with pytest.raises(td.Problem, match="same conversation"):
        td.normalize({"chosen": USER_ASSISTANT, "rejected": USER_ASSISTANT}, "chat-pair")
    with pytest.raises(td.Problem, match="share no prompt"):
        td.normalize({"chosen": USER_ASSISTANT, "rejected": [{"role": "user", "content": "x"}, USER_ASSISTANT[1]]},
                     "chat-pair")
    with pytest.raises(td.Problem, match="all be strings or all be message lists"):
        td.normalize({**messages, "chosen": "5"}, "preference")


def test_arrow_file_and_stream_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([SFT_RECORDS["alpaca"]] * 5)
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    pq.write_table(table, tmp_path / "t.parquet")
    for name in ("f.arrow", "s.arrow", "t.parquet"):
        loaded = td.load(str(tmp_path / name), "sft")
        assert (loaded.format, loaded.count, loaded.where[4]) == ("alpaca", 5, f"{tmp_path / name}: row 5")
    (tmp_path / "bad.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match=r"bad.arrow: unreadable Arrow"):
        td.load(str(tmp_path / "bad.arrow"), "sft")


def test_bad_inputs_one_line_each(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    cases = {"dir.jsonl": "is a directory", "fifo.jsonl": "is a FIFO (named pipe), not a data file",
             "loop.jsonl": "symlink loop, not a data file", "empty.jsonl": "empty file", "blank.jsonl": "no records"}
    for name, message in cases.items():
        with pytest.raises(DataError) as caught:
            td.load(str(tmp_path / name), "sft")
        assert str(caught.value).startswith(f"{tmp_path / name}: {message}")
    with pytest.raises(DataError, match="/dev/null: is a device file"):
        td.load("/dev/null", "sft")


def test_check_source_keeps_nothing_and_logs_the_summary(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [SFT_RECORDS["alpaca"]] * 1204)
    lines: list[str] = []
    loaded = td.check_source(str(data), "sft", "auto", lines.append)
    assert loaded.records == [] and loaded.count == 1204
    assert lines == ["data: 1,204 records, format alpaca, from train.jsonl; checked"]


BAD_FILES = {
    "role.jsonl": '{"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}\n',
    "empty_turn.jsonl": '{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": ""}]}\n',
    "json.jsonl": '{"text": "a"}\n{"text": "b"\n',
    "empty.jsonl": "",
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_dry_run_fails_with_the_run_s_message(forge_cli, tiny_lm, name):
    (forge_cli.cwd / name).write_text(BAD_FILES[name])
    dry = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", name, "--dry-run")
    assert dry.returncode == 2 and "Traceback" not in dry.stderr
    real = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", name, "--no-tracking", "-o", "r")
    assert real.returncode == 2
    assert dry.stderr.strip().splitlines()[-1] == real.stderr.strip().splitlines()[-1]
    assert str(forge_cli.cwd / name) in dry.stderr


def test_dry_run_prints_counts_and_format(forge_cli):
    write_jsonl(forge_cli.cwd / "train.jsonl", [SFT_RECORDS["sharegpt"]] * 7)
    result = forge_cli("run", "--recipe", "sft", "--data", "train.jsonl", "--dry-run", check=True)
    assert "data: 7 records, format sharegpt, from train.jsonl; checked" in result.stderr
    assert "format: auto" in result.stdout
    write_jsonl(forge_cli.cwd / "p.jsonl", [{"prompt": "a", "chosen": "b"}])
    result = forge_cli("run", "--recipe", "dpo", "--model", "m", "--data", "p.jsonl", "--dry-run")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"forge: error: {forge_cli.cwd / 'p.jsonl'}:1: missing field 'rejected'"


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca", "input-output", "tools"])
def test_new_formats_train_on_a_tiny_model(forge_cli, tiny_lm, fmt):
    records = [TOOLS] * 4 if fmt == "tools" else [SFT_RECORDS[fmt]] * 4
    write_jsonl(forge_cli.cwd / "d.jsonl", records)
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", "d.jsonl", "--set", "max_steps=1",
                       "--set", "eval_split=0", "-o", "r", "--no-tracking", check=True)
    expected = "chat" if fmt == "tools" else fmt
    assert f"data: 4 records, format {expected}, from d.jsonl" in result.stderr
    manifest = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())
    assert manifest["status"] == "completed" and manifest["dataset"]["format"] == expected


def test_chat_pair_trains_with_dpo(forge_cli, tiny_lm):
    pair = {"chosen": USER_ASSISTANT, "rejected": [USER_ASSISTANT[0], {"role": "assistant", "content": "6"}]}
    write_jsonl(forge_cli.cwd / "p.jsonl", [pair] * 4)
    result = forge_cli("run", "--recipe", "dpo", "--model", tiny_lm, "--data", "p.jsonl", "--set", "max_steps=1",
                       "--set", "eval_split=0", "-o", "r", "--no-tracking", check=True)
    assert "format chat-pair" in result.stderr


def test_pii_block_fails_at_dry_run_and_run(forge_cli, tiny_lm):
    write_jsonl(forge_cli.cwd / "d.jsonl", [SFT_RECORDS["alpaca"], {"instruction": "mail me", "output": "a@b.io"}])
    for extra in (["--dry-run"], ["--no-tracking", "-o", "r"]):
        result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", "d.jsonl", "--set", "pii=block",
                           *extra)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            f"forge: error: {forge_cli.cwd / 'd.jsonl'}:2: messages[1].content: email a@b.io (pii: block)")


def test_redact_tracks_datasets_and_lineage(forge_cli, tiny_lm):
    records = [SFT_RECORDS["alpaca"]] * 3 + [{"instruction": "card?", "output": "4111 1111 1111 1111"}]
    write_jsonl(forge_cli.cwd / "d.jsonl", records)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{forge_cli.cwd / 'mlflow.db'}"}
    result = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", "d.jsonl", "--set", "max_steps=1",
                       "--set", "eval_split=0", "--set", "pii=redact", "-o", "r", env=env, check=True)
    assert "data: PII redacted before training: 1 card" in result.stderr
    manifest = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())
    redacted = manifest["pii"]["redacted"]
    assert manifest["pii"]["found"] == {"card": 1} and redacted["records"] == 4
    assert "[CARD]" in Path(redacted["path"]).read_text() and "4111" not in Path(redacted["path"]).read_text()
    assert redacted["parent"]["sha256"] == manifest["data"][0]["sha256"]

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.get_run(manifest["mlflow"]["run_id"])
    inputs = {}
    for dataset_input in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in dataset_input.tags}
        inputs[tags["mlflow.data.context"]] = (dataset_input.dataset, tags)
    assert set(inputs) == {"source", "training"}
    source, tags = inputs["source"]
    assert source.digest == manifest["data"][0]["sha256"][:32] and tags["forge.format"] == "alpaca"
    assert tags["forge.records"] == "4" and tags["forge.pii"] == "redact: 1 card"
    assert json.loads(source.schema)["mlflow_colspec"][0]["name"] == "instruction"
    assert inputs["training"][1]["forge.parent_sha256"] == manifest["data"][0]["sha256"]

    lineage = forge_cli("data", "lineage", "r", check=True).stdout
    assert f"artifact {(forge_cli.cwd / 'r' / 'artifact').resolve()} (causal-lm-adapter)" in lineage
    assert "← run" in lineage and "(forge-hf:sft, completed; mlflow run" in lineage
    assert "format alpaca; 4 records; PII 1 card (pii: redact)" in lineage
    assert "trained on the redacted copy" in lineage
    info = json.loads(forge_cli("data", "lineage", "r/artifact", "--json", check=True).stdout)
    assert info["datasets"][0]["sha256"] == manifest["data"][0]["sha256"]
    assert info["run"]["path"] == str((forge_cli.cwd / "r").resolve())


def test_mixture_weights_samples_and_shapes(tmp_path):
    from forge.config import DataSpec

    a = write_jsonl(tmp_path / "a.jsonl", [SFT_RECORDS["alpaca"]] * 6)
    s = write_jsonl(tmp_path / "s.jsonl", [SFT_RECORDS["sharegpt"]] * 2)
    t = write_jsonl(tmp_path / "t.jsonl", [SFT_RECORDS["text"]] * 3)
    specs = [DataSpec(path=str(a), weight=1), DataSpec(path=str(s), weight=3), DataSpec(path=str(s), samples=5)]
    mixture = td.load_mixture(specs, "sft", seed=1)
    assert [(x["format"], x["records"], x["used"]) for x in mixture.sources] == [
        ("alpaca", 6, 2), ("sharegpt", 2, 6), ("sharegpt", 2, 5)]
    assert len(mixture.records) == 13 and mixture.format == "mixed"
    assert mixture.sources[0]["sha256"] == td.file_sha256(a)
    assert td.load_mixture(specs, "sft", seed=1).records == mixture.records  # seeded
    assert mixture.table()[0] == "data: mixture of 3 sources"
    with pytest.raises(DataError, match="cannot be mixed"):
        td.load_mixture([DataSpec(path=str(a)), DataSpec(path=str(t))], "sft")
    with pytest.raises(DataError, match="cannot be mixed"):  # the same at --dry-run, where nothing is kept
        td.check_mixture([DataSpec(path=str(a)), DataSpec(path=str(t))], "sft", "auto", lambda line: None)


def test_mixture_config_errors(forge_cli):
    write_jsonl(forge_cli.cwd / "a.jsonl", [SFT_RECORDS["alpaca"]])
    (forge_cli.cwd / "c.yaml").write_text("recipe: sft\ndata:\n  - {path: a.jsonl, weight: 0}\n"
                                          "  - {path: a.jsonl, weight: 0}\n")
    result = forge_cli("run", "-c", "c.yaml", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip() == "forge: error: c.yaml:2: data: the weights of the data sources sum to zero"
    (forge_cli.cwd / "c.yaml").write_text("recipe: sft\ndata:\n  - {path: a.jsonl, weight: -1}\n"
                                          "  - {path: b.jsonl, samples: 2}\n")
    result = forge_cli("run", "-c", "c.yaml", "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data.0: Input should be greater than or equal to 0 (got -1)" in result.stderr
    assert f"file not found: {forge_cli.cwd / 'b.jsonl'}" in result.stderr


def test_mixture_trains_with_eval_data(forge_cli, tiny_lm):
    write_jsonl(forge_cli.cwd / "a.jsonl", [SFT_RECORDS["alpaca"]] * 4)
    write_jsonl(forge_cli.cwd / "s.jsonl", [SFT_RECORDS["sharegpt"]] * 2)
    write_jsonl(forge_cli.cwd / "e.jsonl", [SFT_RECORDS["chat"]] * 2)
    (forge_cli.cwd / "c.yaml").write_text(f"recipe: sft\nmodel: {tiny_lm}\nmax_steps: 1\neval_data: e.jsonl\n"
                                          "data:\n  - {path: a.jsonl, weight: 1}\n  - {path: s.jsonl, samples: 4}\n")
    result = forge_cli("run", "-c", "c.yaml", "-o", "r", "--no-tracking", check=True)
    assert "data: mixture of 2 sources" in result.stderr
    assert "data: 8 records, format mixed; train 8, eval 2" in result.stderr
    manifest = json.loads((forge_cli.cwd / "r" / "forge.json").read_text())
    assert [(s["role"], s["used"]) for s in manifest["data_sources"]] == [("train", 4), ("train", 4), ("eval", 2)]
    assert [d["field"] for d in manifest["data"]] == ["data", "data", "eval_data"]


def test_inspect_counts_tokens_with_a_model(forge_cli, tiny_lm):
    write_jsonl(forge_cli.cwd / "a.jsonl", [SFT_RECORDS["alpaca"], SFT_RECORDS["alpaca"]])
    [report] = json.loads(forge_cli("data", "inspect", "a.jsonl", "--model", tiny_lm, "--json", check=True).stdout)
    assert report["tokens"]["min"] > 0 and report["tokens"]["min"] == report["tokens"]["max"]
    bad = forge_cli("data", "inspect", "a.jsonl", "--model", "./no/such/model")
    assert bad.returncode == 2 and bad.stderr.startswith("forge: error: --model ./no/such/model: could not load")


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_special_files_fail_the_same_at_dry_run_and_run(forge_cli, tiny_lm, kind):
    path = forge_cli.cwd / "d.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/null")
    dry = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", path, "--dry-run")
    real = forge_cli("run", "--recipe", "sft", "--model", tiny_lm, "--data", path, "--no-tracking", "-o", "r",
                     timeout=60)
    assert dry.returncode == real.returncode == 2
    assert dry.stderr.strip().splitlines()[-1] == real.stderr.strip().splitlines()[-1]
    assert dry.stderr.strip().splitlines()[-1].startswith(f"forge: error: {path}: is a")


def test_dry_run_of_the_default_sft_checks_the_packaged_example_data(forge_cli):
    result = forge_cli("run", "--recipe", "sft", "--dry-run", check=True)
    assert "data: 64 records, format chat, from chat.jsonl; checked" in result.stderr
    assert "PII" not in result.stderr
