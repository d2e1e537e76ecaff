"""The ``lm-eval`` suite: lm-evaluation-harness tasks on local files, offline, on the tiny Llama."""

from __future__ import annotations

import json
import sys

import pytest
from eval_models import make_lm_artifact
from forge import Artifact, ConfigError, EvalRequest, ForgeError


def run_suite(artifact, tmp_path, data=None, **options):
    from forge.plugins import load_plugins

    evaluator = load_plugins().get("evaluators", "lm-eval").item
    return evaluator.run(artifact, EvalRequest(data=data, options=options, output_dir=tmp_path / "eval", seed=0,
                                               log=lambda message: None))


@pytest.fixture(scope="module")
def lm(tmp_path_factory, tiny_lm):
    return Artifact.load(make_lm_artifact(tmp_path_factory.mktemp("lm"), tiny_lm))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_missing_harness_is_one_line(lm, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval → ImportError
    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ForgeError, match=r"needs lm-evaluation-harness, which is not installed: pip install"):
        run_suite(lm, tmp_path, data)


def test_generate_until_task_on_a_local_file(lm, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval (lm-evaluation-harness) is not installed")
    questions = ["the capital of france is", "the opposite of hot is", "convert ten km to", "a short answer"]
    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": q, "answer": "nothing"} for q in questions])
    first = run_suite(lm, tmp_path / "1", data, max_gen_toks="4")
    assert first.metrics["exact_match"] == 0.0 and len(first.records) == 4
    said = [r["output"] for r in first.records]
    assert (tmp_path / "1" / "eval" / "lm_eval_task" / "forge_local.yaml").is_file()
    # answers that are what the model says (the tiny model is random), the last one wrong
    rows = [{"question": q, "answer": s} for q, s in zip(questions, said, strict=True)]
    rows[-1]["answer"] = "something else entirely"
    again = run_suite(lm, tmp_path / "2", write_jsonl(tmp_path / "qa2.jsonl", rows), max_gen_toks="4")
    assert again.metrics["exact_match"] == 0.75
    assert again.per_example["exact_match"] == [1.0, 1.0, 1.0, 0.0]
    assert [r["score"] for r in again.records] == [1.0, 1.0, 1.0, 0.0]
    json.dumps(again.records)  # stored as records.jsonl: JSON-safe


def test_multiple_choice_and_task_yaml(lm, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval (lm-evaluation-harness) is not installed")
    rows = [{"question": "the capital of france is", "choices": ["paris", "cold"], "label": 0},
            {"question": "the opposite of hot is", "choices": ["paris", "cold"], "label": 1},
            {"question": "ten km is", "choices": ["miles", "answer"], "label": 0}]
    data = write_jsonl(tmp_path / "mc.jsonl", rows)
    result = run_suite(lm, tmp_path, data, output_type="multiple_choice", doc_to_choice="{{choices}}",
                       doc_to_target="{{label}}")
    assert 0.0 <= result.metrics["acc"] <= 1.0 and len(result.per_example["acc"]) == 3
    assert result.metrics["acc"] == pytest.approx(sum(result.per_example["acc"]) / 3)
    # the same task as a YAML the user wrote
    task = tmp_path / "mine" / "my_task.yaml"
    task.parent.mkdir()
    task.write_text((tmp_path / "eval" / "lm_eval_task" / "forge_local.yaml").read_text().replace(
        "task: forge_local", "task: my_task"))
    mine = run_suite(lm, tmp_path / "m", task=str(task))
    assert mine.metrics["acc"] == result.metrics["acc"]
    for options, message in [({"output_type": "multiple_choice"}, "needs --set doc_to_choice"),
                             ({"output_type": "ranking"}, "--set output_type=ranking: expected"),
                             ({"task": str(tmp_path / "none.yaml")}, "none.yaml: no such file")]:
        with pytest.raises(ConfigError, match=message):
            run_suite(lm, tmp_path, None if "task" in options else data, **options)
