"""classify on decoder (causal-LM) backbones: LoRA + a sequence-classification head, the pad id, the
``sequence-classifier-adapter`` artifact served as is, and its merged and ONNX exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_classify import REVIEWS, write_reviews
from test_sft import manifest


def test_decoder_backbones_are_told_apart_from_encoders(tiny_lm, tiny_bert):
    from forge_hf.recipes.classify import is_decoder
    from transformers import AutoConfig

    assert is_decoder(AutoConfig.from_pretrained(tiny_lm))
    assert not is_decoder(AutoConfig.from_pretrained(tiny_bert))


def test_lora_classifier_on_tiny_llama_serves_merges_and_exports_to_onnx(forge_cli, tiny_lm, tmp_path):
    import forge
    from forge import Artifact
    from forge_hf.export_merged import export as merged_export
    from forge_onnx.export import export as onnx_export

    write_reviews(forge_cli.cwd / "r.csv")
    forge_cli("run", "--recipe", "classify", "--model", tiny_lm, "--data", "r.csv", "--set", "max_steps=2",
              "--set", "per_device_train_batch_size=8", "--no-tracking", "-o", "run", check=True)
    run = forge_cli.cwd / "run"
    m = manifest(run)
    assert m["artifact"]["kind"] == "sequence-classifier-adapter"
    assert m["config"]["use_peft"] is None and m["config"]["learning_rate"] == 5e-5  # as written; the run used 2e-4
    assert {"eval_accuracy", "eval_macro_f1"} <= set(m["metrics"])
    artifact = Artifact.load(run / "artifact")
    assert artifact.manifest["backbone"] == "decoder" and artifact.manifest["adapter"] == "lora"
    assert artifact.manifest["pad_token_id"] is not None
    assert "LoRA r=16" in (run / "run.log").read_text()
    assert (run / "artifact" / "adapter_config.json").exists() and not (run / "artifact" / "config.json").exists()

    texts = [t for t, _ in REVIEWS[:6]]  # different lengths: the last non-pad token must be found in each
    with forge.load_predictor(artifact) as predictor:
        adapter_probs = predictor.probabilities(texts)
        one_by_one = np.concatenate([predictor.probabilities([t]) for t in texts])
    np.testing.assert_allclose(adapter_probs, one_by_one, atol=1e-5)  # padding changes nothing

    merged = merged_export(artifact, tmp_path / "merged", {})
    assert merged.kind == "sequence-classifier" and merged.extra["parity"]["max_abs_logit_diff"] <= 1e-3
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["id2label"] == {"0": "negative",
                                                                                            "1": "positive"}
    merged_artifact = Artifact(tmp_path / "merged", {"kind": merged.kind, **merged.extra})
    with forge.load_predictor(merged_artifact) as predictor:
        np.testing.assert_allclose(predictor.probabilities(texts), adapter_probs, atol=1e-5)

    (tmp_path / "onnx").mkdir()
    exported = onnx_export(artifact, tmp_path / "onnx", {})
    assert exported.kind == "onnx-sequence-classifier" and exported.extra["parity"]["fp32_max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_classify_packaged_smollm2_with_lora_and_merged_export(forge_cli):
    """An LLM fine-tuned as a classifier: the packaged SmolLM2-135M-Instruct, LoRA + head, two steps, then merged."""
    write_reviews(forge_cli.cwd / "r.csv", REVIEWS[:12])
    forge_cli("run", "--recipe", "classify", "--model", "smollm2-135m-instruct", "--data", "r.csv",
              "--set", "max_steps=2", "--set", "per_device_train_batch_size=4", "--set", "max_length=16",
              "--set", "eval_split=0.25", "--no-tracking", "-o", "run", check=True, timeout=600)
    m = manifest(forge_cli.cwd / "run")
    assert m["provider"]["alias"] == "smollm2-135m-instruct"
    assert m["artifact"]["kind"] == "sequence-classifier-adapter" and m["dataset"]["eval_records"] == 3
    forge_cli("export", "run", "--format", "merged", check=True, timeout=600)
    merged = manifest(forge_cli.cwd / "run" / "exports" / "merged")
    assert merged["kind"] == "sequence-classifier" and merged["labels"] == ["negative", "positive"]
    assert merged["parity"]["max_abs_logit_diff"] <= 1e-3 and merged["parity"]["samples"] == 3
    config = json.loads((forge_cli.cwd / "run" / "exports" / "merged" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["pad_token_id"] is not None
