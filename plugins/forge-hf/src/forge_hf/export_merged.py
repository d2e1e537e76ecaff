"""Exporter ``merged``: a LoRA adapter merged into its base → a ``causal-lm`` artifact that plain
``transformers.AutoModelForCausalLM.from_pretrained`` loads, or (from a ``sequence-classifier-adapter``) a
``sequence-classifier`` that ``AutoModelForSequenceClassification.from_pretrained`` loads, head included.

    forge export runs/sft-1 --format merged [--set dtype=bf16]
    forge export runs/classify-1 --format merged

The merged weights are checked against the adapter model on a sample prompt; the max abs logit difference is
recorded in the manifest, and the export fails if it exceeds ``tolerance`` (default 1e-3 for fp32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge.artifacts import Artifact, ArtifactResult
from forge.errors import ForgeError


def export(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    from forge_hf.base_model import checked_base_model, resolve_base_model

    unknown = set(options) - {"dtype", "tolerance"}
    if unknown:
        raise ForgeError(f"--set {sorted(unknown)[0]}: the merged exporter takes dtype and tolerance")
    checked_base_model(artifact)  # the base-model policy before torch is even imported
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from forge_hf.provider import auto_dtype

    dtype = auto_dtype(str(options.get("dtype", "fp32")))
    if artifact.kind == "sequence-classifier-adapter":
        return export_classifier(artifact, output_dir, dtype, options)
    base_source, _ = resolve_base_model(artifact)
    base = AutoModelForCausalLM.from_pretrained(base_source, dtype=torch.float32, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    adapted = PeftModel.from_pretrained(base, artifact.path).eval()
    sample = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    with torch.inference_mode():
        expected = adapted(**sample).logits
    merged = adapted.merge_and_unload().to(dtype)
    merged.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    if (artifact.path / "heldout.jsonl").exists():  # the held-out split travels on: later exports check against it
        import shutil

        shutil.copy(artifact.path / "heldout.jsonl", output_dir / "heldout.jsonl")
    generation = (artifact.path / "generation_config.json")
    if generation.exists():
        GenerationConfig.from_pretrained(artifact.path).save_pretrained(output_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32, use_safetensors=True).eval()
    with torch.inference_mode():
        diff = float((reloaded(**sample).logits - expected).abs().max())
    tolerance = float(options.get("tolerance", 1e-3 if dtype == torch.float32 else 5e-1))
    if diff > tolerance:
        raise ForgeError(f"merged model differs from the adapter model by {diff:.3g} (> tolerance {tolerance})")
    return ArtifactResult(kind="causal-lm", extra={
        "base_model": artifact.manifest["base_model"],
        "merged_from": "lora",
        "dtype": str(dtype).removeprefix("torch."),
        "parity": {"max_abs_logit_diff": diff, "tolerance": tolerance},
    })


def export_classifier(artifact: Artifact, output_dir: Path, dtype: Any, options: dict[str, Any]) -> ArtifactResult:
    """LoRA and head merged into the classifier's base; parity on held-out texts (or a sample) against the adapter."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    from forge_hf.predict import load_classifier

    adapted, tokenizer = load_classifier(artifact, merge=False)  # fp32
    held = artifact.path / "heldout.jsonl"
    texts = [json.loads(x)["text"] for x in held.read_text("utf-8").splitlines()[:16]] if held.exists() else []
    texts = texts or ["The quick brown fox jumps over the lazy dog.", "a short one"]
    max_length = int(artifact.manifest.get("max_length", 512))
    sample = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = adapted(**sample).logits
    model = adapted.merge_and_unload()
    model.to(dtype).save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    if held.exists():
        shutil.copy(held, output_dir / "heldout.jsonl")
    reloaded = AutoModelForSequenceClassification.from_pretrained(output_dir, dtype=torch.float32,
                                                                  use_safetensors=True).eval()
    with torch.inference_mode():
        diff = float((reloaded(**sample).logits - expected).abs().max())
    tolerance = float(options.get("tolerance", 1e-3 if dtype == torch.float32 else 5e-1))
    if diff > tolerance:
        raise ForgeError(f"merged classifier differs from the adapter model by {diff:.3g} (> tolerance {tolerance})")
    keep = ("labels", "base_model", "max_length", "backbone", "pad_token_id")
    return ArtifactResult(kind="sequence-classifier", metrics=dict(artifact.manifest.get("metrics", {})), extra={
        **{k: artifact.manifest[k] for k in keep if k in artifact.manifest},
        "merged_from": "lora", "dtype": str(dtype).removeprefix("torch."),
        "parity": {"max_abs_logit_diff": diff, "tolerance": tolerance, "samples": len(texts)}})
