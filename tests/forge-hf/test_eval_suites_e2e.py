"""The forge-hf suites end to end through the real ``forge eval`` CLI on the packaged models: the MiniLM
classifier (classify recipe) and its ONNX export; the SmolLM2 sft run with perplexity, exact-match,
generation-checks and lm-eval. Slow: real models, few examples."""

from __future__ import annotations

import json

import pytest
from test_classify import FAST, write_reviews


def kept(artifact_dir, suite):
    [result] = [p for p in (artifact_dir / "evals").iterdir() if p.name.startswith(f"{suite}-")]
    return result


@pytest.mark.slow
def test_classification_suite_on_minilm_and_its_onnx_export(forge_cli):
    write_reviews(forge_cli.cwd / "r.csv")
    forge_cli("run", "--recipe", "classify", "--data", "r.csv", *FAST, "--set", "num_train_epochs=2", "-o", "run",
              check=True, timeout=900)
    forge_cli("export", "run", "--format", "onnx", check=True, timeout=600)
    out = forge_cli("eval", "run", "--suite", "classification", "--gate", "accuracy>=0", "--json", check=True,
                    timeout=600)
    torch_eval = json.loads(out.stdout)
    assert torch_eval["artifact_kind"] == "sequence-classifier" and torch_eval["passed"] is True
    accuracy = torch_eval["metrics"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"]
    assert {"macro_f1", "ece", "precision_positive", "recall_negative"} <= set(torch_eval["metrics"])
    where = kept(forge_cli.cwd / "run" / "artifact", "classification")
    heldout = (forge_cli.cwd / "run" / "artifact" / "heldout.jsonl").read_text().splitlines()
    assert len((where / "records.jsonl").read_text().splitlines()) == len(heldout)
    assert (where / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    onnx = forge_cli("eval", "run/exports/onnx", "--suite", "classification", "--json", check=True, timeout=600)
    onnx_eval = json.loads(onnx.stdout)
    assert onnx_eval["artifact_kind"] == "onnx-sequence-classifier"
    assert onnx_eval["metrics"]["accuracy"]["value"] == accuracy["value"]
    failed = forge_cli("eval", "run", "--suite", "classification", "--gate", "accuracy>1", timeout=600)
    assert failed.returncode == 3 and "gate failed: accuracy>1" in failed.stderr


@pytest.mark.slow
def test_lm_suites_on_smollm2(forge_cli, smollm_sft_run):
    run = str(smollm_sft_run)
    questions = forge_cli.cwd / "gsm.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in [
        ("What is 2 + 3? Reply with the number only.", 5), ("What is 10 - 4? Reply with the number only.", 6),
        ("What is 3 times 3? Reply with the number only.", 9)]))
    evals = {}
    for suite, args in [("perplexity", ["--set", "limit=4"]),
                        ("exact-match", ["--data", str(questions), "--set", "max_new_tokens=16",
                                         "--set", "batch_size=3"]),
                        ("generation-checks", ["--set", "n=3", "--set", "max_new_tokens=48"]),
                        ("lm-eval", ["--data", str(questions), "--set", "max_gen_toks=8", "--set", "limit=2"])]:
        if suite == "lm-eval":
            pytest.importorskip("lm_eval", reason="lm-eval (lm-evaluation-harness) is not installed")
        out = forge_cli("eval", run, "--suite", suite, *args, "--json", check=True, timeout=900)
        evals[suite] = json.loads(out.stdout)
    assert evals["perplexity"]["artifact_kind"] == "causal-lm-adapter"
    perplexity = evals["perplexity"]["metrics"]["perplexity"]
    assert 1 < perplexity["low"] <= perplexity["value"] <= perplexity["high"] < 1000
    assert 0 <= evals["exact-match"]["metrics"]["exact_match"]["value"] <= 1
    records = (kept(smollm_sft_run / "artifact", "exact-match") / "records.jsonl").read_text().splitlines()
    assert [json.loads(r)["expected"] for r in records] == ["5", "6", "9"]
    checks = evals["generation-checks"]["metrics"]
    # SmolLM2-Instruct's template (ChatML) round-trips and its <|im_end|> is the EOS
    assert checks["roundtrip_rate"]["value"] == 1.0 and checks["turn_end_is_eos"]["value"] == 1.0
    assert "exact_match" in evals["lm-eval"]["metrics"]
