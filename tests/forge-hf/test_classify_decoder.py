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


def make_adapter_artifact(path, base):
    """A ``sequence-classifier-adapter`` as the classify recipe writes it for a decoder (LoRA + head, pad id in the
    manifest, the base sealed as a training run of this user seals it), from the tiny Llama, its LoRA weights nudged off
    zero so that merging changes the model."""
    import torch
    from forge_hf.base_model import base_model_fields
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    labels = ["negative", "positive"]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id)
    adapted = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    adapted.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "heldout.jsonl").write_text("".join(json.dumps({"text": t, "label": n}) + "\n" for t, n in REVIEWS[:6]))
    (path / "forge.json").write_text(json.dumps({
        "schema": 1, "type": "artifact", "kind": "sequence-classifier-adapter", "labels": labels, "max_length": 64,
        **base_model_fields(str(base)), "backbone": "decoder", "adapter": "lora",
        "pad_token_id": tokenizer.pad_token_id}))
    return path


def test_lora_classifier_adapter_serves_merges_and_exports_to_onnx(tiny_lm, tmp_path):
    import forge
    from forge import Artifact
    from forge_hf.export_merged import export as merged_export
    from forge_onnx.export import export as onnx_export

    artifact = Artifact.load(make_adapter_artifact(tmp_path / "adapter", tiny_lm))
    texts = [t for t, _ in REVIEWS[:6]]  # different lengths: the last non-pad token must be found in each
    with forge.load_predictor(artifact) as predictor:
        adapter_probs = predictor.probabilities(texts)
        one_by_one = np.concatenate([predictor.probabilities([t]) for t in texts])
    np.testing.assert_allclose(adapter_probs, one_by_one, atol=1e-5)  # padding changes nothing

    (tmp_path / "merged").mkdir()
    merged = merged_export(artifact, tmp_path / "merged", {})
    assert merged.kind == "sequence-classifier" and merged.extra["parity"]["max_abs_logit_diff"] <= 1e-3
    assert merged.extra["parity"]["samples"] == 6 and (tmp_path / "merged" / "heldout.jsonl").exists()
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["pad_token_id"] is not None
    with forge.load_predictor(Artifact(tmp_path / "merged", {"kind": merged.kind, **merged.extra})) as predictor:
        np.testing.assert_allclose(predictor.probabilities(texts), adapter_probs, atol=1e-5)

    (tmp_path / "onnx").mkdir()
    exported = onnx_export(artifact, tmp_path / "onnx", {})
    assert exported.kind == "onnx-sequence-classifier" and exported.extra["parity"]["fp32_max_abs_diff"] <= 1e-4
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["id2label"] == config["id2label"]


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
    assert m["config"]["use_peft"] is None and "LoRA r=16" in (forge_cli.cwd / "run" / "run.log").read_text()
    assert "learning rate 0.0002" in (forge_cli.cwd / "run" / "run.log").read_text()  # LoRA's default
    adapter = json.loads((forge_cli.cwd / "run" / "artifact" / "forge.json").read_text())
    assert adapter["backbone"] == "decoder" and adapter["adapter"] == "lora" and adapter["pad_token_id"] is not None
    assert not (forge_cli.cwd / "run" / "artifact" / "config.json").exists()  # an adapter, not a full model
    forge_cli("export", "run", "--format", "merged", check=True, timeout=600)
    merged = manifest(forge_cli.cwd / "run" / "exports" / "merged")
    assert merged["kind"] == "sequence-classifier" and merged["labels"] == ["negative", "positive"]
    assert merged["parity"]["max_abs_logit_diff"] <= 1e-3 and merged["parity"]["samples"] == 3
    config = json.loads((forge_cli.cwd / "run" / "exports" / "merged" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["pad_token_id"] is not None
