"""``perplexity``, ``exact-match`` and ``generation-checks`` on the tiny Llama (called as ``forge eval`` calls them),
and their answer extraction and normalisation."""

from __future__ import annotations

import json
import math

import pytest
from eval_models import make_lm_artifact
from forge import Artifact, ConfigError, DataError, EvalRequest
from forge_hf.eval_lm import extract_answer, normalise

CHATS = [{"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                       {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
         for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima"), ("chad", "x")]]


def run_suite(name, artifact, tmp_path, data=None, **options):
    from forge.plugins import load_plugins

    evaluator = load_plugins().get("evaluators", name).item
    return evaluator.run(artifact, EvalRequest(data=data, options=options, output_dir=tmp_path / "eval", seed=2,
                                               log=lambda message: None))


@pytest.fixture(scope="module")
def lm(tmp_path_factory, tiny_lm):
    return Artifact.load(make_lm_artifact(tmp_path_factory.mktemp("lm"), tiny_lm, heldout=CHATS))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_answer_extraction_and_normalisation():
    assert extract_answer("so 3 + 4 = 7\n#### 1,234", "gsm8k", None) == "1,234"
    assert extract_answer("the total is $1,234.50 dollars", "gsm8k", None) == "$1,234.50"
    assert extract_answer("no number here", "gsm8k", None) is None
    import re

    assert extract_answer("Answer: B. Answer: C", "regex", re.compile(r"Answer: (\w)")) == "C"
    assert extract_answer("x", "regex", re.compile(r"Answer: (\w)")) is None
    assert normalise(" $1,234.50 ") == normalise("1234.5") == "1234.5"
    assert normalise("42.0") == normalise("42") == "42"
    assert normalise("  Paris. ") == normalise("paris") == "paris"
    assert normalise("new  york") == "new york" and normalise("1,2 and 3") == "1,2 and 3"


def test_perplexity_is_token_weighted_and_matches_the_model(lm, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = [{"text": "the capital of france is paris"}, {"text": "convert ten km to miles"},
             {"text": "a short answer please, the opposite of hot is cold"}]
    data = write_jsonl(tmp_path / "text.jsonl", texts)
    result = run_suite("perplexity", lm, tmp_path, data, batch_size="2")
    model = AutoModelForCausalLM.from_pretrained(lm.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(lm.path)
    total, count, means = 0.0, 0, []
    for record in texts:
        ids = torch.tensor([tokenizer(record["text"])["input_ids"]])
        with torch.inference_mode():
            loss = float(model(ids, labels=ids).loss)  # mean NLL over tokens 1..n-1
        total += loss * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
        means.append(loss)
    assert result.metrics["tokens"] == count
    assert result.metrics["nll"] == pytest.approx(total / count, rel=1e-4)
    assert result.metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)
    assert result.per_example["example_nll"] == pytest.approx(means, rel=1e-4)
    low, high = result.intervals["perplexity"]
    assert low <= result.metrics["perplexity"] <= high
    assert [r["tokens"] for r in result.records] == [len(tokenizer(t["text"])["input_ids"]) - 1 for t in texts]

    chat = run_suite("perplexity", lm, tmp_path)  # heldout.jsonl: the assistant turns only
    every = run_suite("perplexity", lm, tmp_path, target="all")
    assert chat.extra["records"] == len(CHATS) and 0 < chat.metrics["tokens"] < every.metrics["tokens"]
    assert chat.records[0]["expected"] == "the capital of france is paris."


def test_exact_match_batched_equals_one_at_a_time(lm, tmp_path):
    import forge

    questions = ["what is the capital of france?", "convert ten km to miles", "the opposite of hot is",
                 "a short answer please"]
    with forge.load_predictor(lm, {"max_new_tokens": 6}) as predictor:
        said = [o["text"] for o in predictor.predict([{"messages": [{"role": "user", "content": q}]}
                                                      for q in questions])]
    # the references are what the model says (the tiny model is random), but the last one is wrong
    rows = [{"question": q, "answer": a} for q, a in zip(questions, said, strict=True)]
    rows[-1]["answer"] = "something else"
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    batched = run_suite("exact-match", lm, tmp_path, data, max_new_tokens="6", batch_size="4")
    single = run_suite("exact-match", lm, tmp_path, data, max_new_tokens="6", batch_size="1")
    assert [r["output"] for r in batched.records] == [r["output"] for r in single.records] == said
    assert batched.metrics["exact_match"] == 0.75 and batched.per_example["exact_match"] == [1.0, 1.0, 1.0, 0.0]
    assert batched.extra["extract"] == "whole" and batched.records[0]["expected"] == said[0]
    # GSM8K references: "#### N" extracted; a regex that finds nothing scores 0
    gsm = write_jsonl(tmp_path / "gsm.jsonl", [{"question": "what is 2+2?", "answer": "2+2=4\n#### 4"}])
    result = run_suite("exact-match", lm, tmp_path, gsm, max_new_tokens="4")
    assert result.extra["extract"] == "gsm8k" and result.records[0]["expected"] == "4"
    result = run_suite("exact-match", lm, tmp_path, gsm, max_new_tokens="4", regex=r"ANSWER=(\d+)")
    assert result.records[0]["extracted"] is None and result.metrics["exact_match"] == 0.0
    for options, error, message in [
        ({"regex": "("}, ConfigError, r"--set regex=\(: not a regular expression"),
        ({"extract": "fuzzy"}, ConfigError, "--set extract=fuzzy: expected auto, gsm8k, regex or whole"),
        ({"answer_column": "target"}, DataError, r"gsm.jsonl:1: missing answer field 'target'"),
        ({"batch_size": "x"}, ConfigError, "--set batch_size=x: expected an integer"),
    ]:
        with pytest.raises(error, match=message):
            run_suite("exact-match", lm, tmp_path, gsm, **options)


def test_generation_checks_find_a_template_that_does_not_end_turns(lm, tmp_path):
    result = run_suite("generation-checks", lm, tmp_path, n="3", max_new_tokens="5")
    assert len(result.records) == 3 and result.extra["chat_template"] is True
    assert result.extra["markers"] == ["<|im_start|>", "<|im_end|>"]
    assert result.metrics["roundtrip_rate"] == 1.0 and result.metrics["turn_end_is_eos"] == 1.0
    record = result.records[0]
    assert record["template"]["same_ids"] and record["template"]["turn_end"] == "<|im_end|>"
    assert result.metrics["stop_rate"] == pytest.approx(sum(r["stopped"] for r in result.records) / 3)
    assert all(r["tokens"] <= 5 and (r["stopped"] or r["tokens"] == 5) for r in result.records)

    # the bug other tools ship: EOS is <|endoftext|> while the template ends turns with <|im_end|>
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(lm.path, broken)
    for name in ("generation_config.json", "config.json"):
        config = json.loads((broken / name).read_text())
        config["eos_token_id"] = 1  # <|endoftext|>
        (broken / name).write_text(json.dumps(config))
    result = run_suite("generation-checks", Artifact.load(broken), tmp_path, n="2", max_new_tokens="3")
    assert result.metrics["turn_end_is_eos"] == 0.0 and result.metrics["roundtrip_rate"] == 1.0
