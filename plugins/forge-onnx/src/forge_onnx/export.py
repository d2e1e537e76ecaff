"""Exporter ``onnx``: ``sequence-classifier`` → ``onnx-sequence-classifier``, ``forecaster`` → ``onnx-forecaster``,
and causal LMs (``causal-lm``, ``causal-lm-adapter``) → ``onnx-causal-lm`` (:mod:`forge_onnx.export_lm`).

    forge export runs/classify-1 --format onnx                  # fp32
    forge export runs/classify-1 --format onnx --quantize int8  # onnxruntime dynamic quantization

Dynamic batch (and, for text, sequence) axes. Every export runs the ONNX model in a plain
``onnxruntime.InferenceSession`` next to the source model and records the max abs difference; fp32 fails above
``tolerance`` (default 1e-4). int8 records the accuracy change on the classifier's held-out split and fails when
accuracy drops by more than ``max_accuracy_drop`` (default 0.02); an int8 forecaster fails when its forecasts move by
more than ``int8_tolerance`` (relative, default 0.05).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from forge.artifacts import Artifact, ArtifactResult
from forge.errors import ForgeError

OPTIONS = {"quantize", "tolerance", "max_accuracy_drop", "int8_tolerance", "opset"}
SAMPLE_TEXTS = ["a short one", "a somewhat longer sentence to make the batch ragged", "hello"]


def export(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    quantize = options.get("quantize")
    if quantize not in (None, "int8"):
        raise ForgeError(f"--quantize {quantize}: the onnx exporter knows int8")
    if artifact.kind in ("causal-lm", "causal-lm-adapter"):
        from forge_onnx.export_lm import export_causal_lm

        return export_causal_lm(artifact, output_dir, options)
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ForgeError(f"--set {unknown[0]}: the onnx exporter takes {', '.join(sorted(OPTIONS))}")
    if artifact.kind in ("sequence-classifier", "sequence-classifier-adapter"):
        return export_classifier(artifact, output_dir, options)
    if artifact.kind == "sentence-embedder":
        from forge_onnx.export_embedder import export_embedder

        return export_embedder(artifact, output_dir, options)
    return export_forecaster(artifact, output_dir, options)


def session(path: Path, threads: int = 0, spinning: bool = False) -> Any:
    """A plain InferenceSession: explicit thread count, worker threads that sleep between kernels unless
    ``spinning``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def quantize_int8(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
    prepared.unlink()


def run_text_model(ort_session: Any, encoded: Any, names: list[str]) -> np.ndarray:
    """The first output of an exported text model for tokenizer output ``encoded`` (numpy), inputs ``names``."""
    return ort_session.run(None, {n: encoded[n].astype(np.int64) for n in names})[0]


def check_parity(fp32: Path, output_dir: Path, options: dict[str, Any], samples: list[str],
                 source: Callable[[list[str]], np.ndarray], exported: Callable[[Any, list[str]], np.ndarray],
                 what: str) -> tuple[dict[str, Any], Any]:
    """Compare the fp32 ONNX model at ``fp32`` with the source model on ``samples`` (fail above ``tolerance``), then
    make ``output_dir/model.onnx``: the fp32 model, or with ``quantize=int8`` its dynamic int8 quantization (its max
    difference recorded too). ``exported(session, texts)`` runs an ONNX session. Returns the parity record and the
    int8 session (``None`` for fp32), for the caller's held-out check."""
    fp32_diff = float(np.abs(exported(session(fp32), samples) - source(samples)).max())
    tolerance = float(options.get("tolerance", 1e-4))
    if fp32_diff > tolerance:
        raise ForgeError(f"onnx parity: max abs {what} difference {fp32_diff:.3g} > tolerance {tolerance}")
    parity: dict[str, Any] = {"fp32_max_abs_diff": fp32_diff, "tolerance": tolerance, "samples": len(samples)}
    final = output_dir / "model.onnx"
    if options.get("quantize") != "int8":
        fp32.rename(final)
        return parity, None
    quantize_int8(fp32, final)
    fp32.unlink()
    int8_session = session(final)
    parity["int8_max_abs_diff"] = float(np.abs(exported(int8_session, samples) - source(samples)).max())
    return parity, int8_session


def _torch_export(module: Any, args: tuple[Any, ...], names: list[str], output: str, dynamic: dict[str, Any],
                  path: Path, opset: int, kwargs: dict[str, Any] | None = None) -> None:
    import torch

    torch.onnx.export(module, args, str(path), kwargs=kwargs, input_names=names, output_names=[output],
                      dynamic_shapes=dynamic, dynamo=True, external_data=False, opset_version=opset, verbose=False)


def export_classifier(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    import torch

    try:
        from forge_hf.predict import load_classifier
    except ImportError:
        raise ForgeError("exporting a text classifier needs forge-hf: pip install 'forge-onnx[hf]'") from None
    model, tokenizer = load_classifier(artifact)  # an adapter's LoRA and head are merged into its base
    labels = list(artifact.manifest["labels"])
    max_length = int(artifact.manifest.get("max_length", 512))
    heldout = [json.loads(x) for x in (artifact.path / "heldout.jsonl").read_text("utf-8").splitlines()] \
        if (artifact.path / "heldout.jsonl").exists() else []
    import inspect

    accepted = set(inspect.signature(model.forward).parameters) & {"input_ids", "attention_mask", "token_type_ids"}
    names = [n for n in tokenizer.model_input_names if n in accepted] or ["input_ids", "attention_mask"]

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None}).logits

    def encode(texts: list[str], kind: str) -> Any:
        return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors=kind)

    sample_texts = [r["text"] for r in heldout[:16]] or SAMPLE_TEXTS
    sample = encode(sample_texts, "pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_length)
    fp32 = output_dir / "model.fp32.onnx"
    _torch_export(Logits().eval(), (), names, "logits", {n: {0: batch, 1: sequence} for n in names}, fp32,
                  int(options.get("opset", 18)), kwargs={n: sample[n] for n in names})

    def torch_logits(texts: list[str]) -> np.ndarray:
        encoded = encode(texts, "pt")
        with torch.inference_mode():
            return model(**{n: encoded[n] for n in names}).logits.numpy()

    def onnx_logits(ort_session: Any, texts: list[str]) -> np.ndarray:
        return run_text_model(ort_session, encode(texts, "np"), names)

    parity, int8_session = check_parity(fp32, output_dir, options, sample_texts, torch_logits, onnx_logits, "logit")
    if int8_session is not None:
        if heldout:
            texts = [r["text"] for r in heldout]
            truth = np.array([labels.index(r["label"]) for r in heldout])
            source_accuracy = float((torch_logits(texts).argmax(-1) == truth).mean())
            int8_accuracy = float((onnx_logits(int8_session, texts).argmax(-1) == truth).mean())
            drop_limit = float(options.get("max_accuracy_drop", 0.02))
            parity.update({"heldout_records": len(texts), "source_accuracy": source_accuracy,
                           "int8_accuracy": int8_accuracy, "accuracy_change": int8_accuracy - source_accuracy,
                           "max_accuracy_drop": drop_limit})
            if source_accuracy - int8_accuracy > drop_limit:
                raise ForgeError(f"int8 accuracy {int8_accuracy:.3f} is {source_accuracy - int8_accuracy:.3f} below "
                                 f"the source model's {source_accuracy:.3f} (max_accuracy_drop {drop_limit})")
        else:
            parity["accuracy_change"] = None  # the source artifact kept no held-out split
    tokenizer.save_pretrained(output_dir)
    if (artifact.path / "config.json").exists():
        shutil.copy(artifact.path / "config.json", output_dir / "config.json")
    else:  # an adapter: the merged model's config (labels, pad id)
        model.config.save_pretrained(output_dir)
    return ArtifactResult(kind="onnx-sequence-classifier", metrics=dict(artifact.manifest.get("metrics", {})), extra={
        "labels": labels, "max_length": max_length, "input_names": names,
        "quantization": options.get("quantize") or "fp32", "parity": parity})


def export_forecaster(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    import torch

    try:
        from forge_timeseries.model import load_forecaster, predict, sample_windows
    except ImportError:
        raise ForgeError("exporting a forecaster needs forge-timeseries: pip install 'forge-onnx[timeseries]'") \
            from None
    spec, model = load_forecaster(artifact.path)
    windows, transform = sample_windows(spec, artifact.path)  # per-series scaling for a many-series model
    inputs = torch.from_numpy(transform.inputs(windows))
    fp32 = output_dir / "model.fp32.onnx"
    _torch_export(model, (inputs,), ["inputs"], "outputs", {"x": {0: torch.export.Dim("batch")}}, fp32,
                  int(options.get("opset", 18)))

    def onnx_forecast(ort_session: Any) -> np.ndarray:
        raw = ort_session.run(None, {"inputs": transform.inputs(windows)})[0]
        return transform.outputs(windows, raw)

    expected = predict(spec, model, windows, transform)
    fp32_diff = float(np.abs(onnx_forecast(session(fp32)) - expected).max())
    scale = float(np.abs(expected).max()) or 1.0
    tolerance = float(options.get("tolerance", 1e-4))
    if fp32_diff / scale > tolerance:
        raise ForgeError(f"onnx parity: forecasts differ by {fp32_diff:.3g} (relative {fp32_diff / scale:.3g} > "
                         f"tolerance {tolerance})")
    parity: dict[str, Any] = {"fp32_max_abs_diff": fp32_diff, "tolerance": tolerance, "samples": len(windows)}
    final = output_dir / "model.onnx"
    if options.get("quantize") == "int8":
        quantize_int8(fp32, final)
        fp32.unlink()
        diff = float(np.abs(onnx_forecast(session(final)) - expected).max())
        limit = float(options.get("int8_tolerance", 0.05))
        parity.update({"int8_max_abs_diff": diff, "int8_relative_diff": diff / scale, "int8_tolerance": limit})
        if diff / scale > limit:
            raise ForgeError(f"int8 forecasts move by {diff / scale:.3g} relative (> int8_tolerance {limit})")
    else:
        fp32.rename(final)
    for name in ("forecaster.json", "history.json"):
        shutil.copy(artifact.path / name, output_dir / name)
    return ArtifactResult(kind="onnx-forecaster", metrics=dict(artifact.manifest.get("metrics", {})), extra={
        "horizon": spec.horizon, "window": spec.window, "freq": spec.freq, "columns": spec.columns,
        "id_column": spec.id_column, "series": artifact.manifest.get("series", 1), "levels": spec.levels,
        "quantization": options.get("quantize") or "fp32", "parity": parity})
