"""``sentence-embedder`` → ``onnx-sentence-embedder``: the whole sentence-transformers pipeline (encoder, pooling,
normalisation) as one ONNX graph whose output is ``sentence_embedding``.

    forge export runs/embed-1 --format onnx                    # fp32, parity-checked (max abs diff ≤ 1e-4)
    forge export runs/embed-1 --format onnx --quantize int8    # also: held-out recall@10 may drop ≤ 0.02

Parity: the ONNX model and the torch model embed the same held-out texts (``heldout.jsonl``, else a few samples);
fp32 fails when any coordinate differs by more than ``tolerance``. int8 records the max difference and the held-out
retrieval metrics of both, and fails when recall@10 drops by more than ``max_accuracy_drop``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from forge.artifacts import Artifact, ArtifactResult
from forge.errors import ForgeError

from forge_onnx.export import SAMPLE_TEXTS, _torch_export, check_parity, run_text_model

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_embedder(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    import torch

    try:
        from forge_hf.retrieval import evaluate_embeddings
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ForgeError("exporting a sentence-embedder needs sentence-transformers and forge-hf: "
                         "pip install 'forge-hf[embed]' 'forge-onnx[hf]'") from None
    model = SentenceTransformer(str(artifact.path), device="cpu", model_kwargs={"use_safetensors": True}).eval()
    tokenizer = model.tokenizer
    max_length = int(artifact.manifest.get("max_length") or model.max_seq_length or 512)
    heldout = [json.loads(x) for x in (artifact.path / "heldout.jsonl").read_text("utf-8").splitlines() if x.strip()] \
        if (artifact.path / "heldout.jsonl").exists() else []
    sample_texts = [t for r in heldout[:8] for t in (r["anchor"], r["positive"])] or SAMPLE_TEXTS
    probe = tokenizer(["a"], return_tensors="pt")
    names = [n for n in INPUTS if n in probe]

    class Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids
            return self.model(features)["sentence_embedding"]

    def encode(texts: list[str], kind: str) -> Any:
        return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors=kind)

    sample = encode(sample_texts, "pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_length)
    fp32 = output_dir / "model.fp32.onnx"
    try:
        _torch_export(Embedding().eval(), (), names, "sentence_embedding",
                      {n: {0: batch, 1: sequence} for n in names}, fp32, int(options.get("opset", 18)),
                      kwargs={n: sample[n] for n in names})
    except Exception as exc:  # torch.export names the construct it cannot trace: say so in one line
        raise ForgeError(f"onnx export of {artifact.path}: torch.export failed "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None

    def torch_embed(texts: list[str]) -> np.ndarray:
        encoded = encode(texts, "pt")
        with torch.inference_mode():
            return Embedding()(**{n: encoded[n] for n in names}).numpy()

    def onnx_embed(ort_session: Any, texts: list[str]) -> np.ndarray:
        return run_text_model(ort_session, encode(texts, "np"), names)

    parity, int8_session = check_parity(fp32, output_dir, options, sample_texts, torch_embed, onnx_embed, "embedding")
    if int8_session is not None and heldout:
        source, _ = evaluate_embeddings(lambda texts: _batched(torch_embed, texts), heldout)
        quantized, _ = evaluate_embeddings(lambda texts: _batched(lambda t: onnx_embed(int8_session, t), texts),
                                           heldout)
        limit = float(options.get("max_accuracy_drop", 0.02))
        parity.update({"heldout_records": len(heldout), "source_recall_at_10": source["recall_at_10"],
                       "int8_recall_at_10": quantized["recall_at_10"], "source_mrr": source["mrr"],
                       "int8_mrr": quantized["mrr"], "max_accuracy_drop": limit})
        drop = source["recall_at_10"] - quantized["recall_at_10"]
        if drop > limit:
            raise ForgeError(f"int8 held-out recall@10 {quantized['recall_at_10']:.3f} is {drop:.3f} below the "
                             f"source model's {source['recall_at_10']:.3f} (max_accuracy_drop {limit})")
    tokenizer.save_pretrained(output_dir)
    if (artifact.path / "heldout.jsonl").exists():  # evaluations of the export default to the same split
        shutil.copy(artifact.path / "heldout.jsonl", output_dir / "heldout.jsonl")
    dimension = int(artifact.manifest.get("dimension") or model.get_embedding_dimension() or 0)
    return ArtifactResult(kind="onnx-sentence-embedder", metrics=dict(artifact.manifest.get("metrics", {})), extra={
        "dimension": dimension, "normalize": bool(artifact.manifest.get("normalize", False)),
        "max_length": max_length, "input_names": names, "output_name": "sentence_embedding",
        "quantization": options.get("quantize") or "fp32", "parity": parity})


def _batched(embed: Any, texts: list[str], size: int = 32) -> np.ndarray:
    return np.concatenate([embed(texts[i:i + size]) for i in range(0, len(texts), size)])
