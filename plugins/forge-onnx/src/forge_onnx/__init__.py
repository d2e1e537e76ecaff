"""forge-onnx: ONNX export and ONNX Runtime serving. Registered by reference: importing this imports nothing heavy."""

from __future__ import annotations

import forge

__version__ = "0.1.0"


@forge.hookimpl
def register_exporters(register: forge.Register) -> None:
    register(forge.Exporter(name="onnx", accepts=("sequence-classifier", "forecaster", "causal-lm",
                                                            "causal-lm-adapter", "sentence-embedder",
                                                            "sequence-classifier-adapter"),
                            export="forge_onnx.export:export", options="forge_onnx.export_options:OnnxOptions",
                            summary="ONNX fp32 or int8 (--quantize int8), parity-checked; LMs (KV cache), embedders"))
    register(forge.Exporter(name="service", accepts=("onnx-sequence-classifier",),
                            export="forge_onnx.service:export",
                            summary="deployable folder: app.py (no forge, no torch), pinned requirements, Dockerfile"))


@forge.hookimpl
def register_servers(register: forge.Register) -> None:
    register(forge.Server(name="onnxruntime", accepts=("onnx-sequence-classifier", "onnx-forecaster",
                                                                  "onnx-sentence-embedder"),
                          create_app="forge_onnx.serve:create_onnx_app",
                          predict="forge_onnx.serve:create_predictor",
                          summary="ONNX Runtime: /predict, /forecast or /embed, explicit threads, no spinning"))
    register(forge.Server(name="onnxruntime-lm", accepts=("onnx-causal-lm",),
                          create_app="forge_onnx.serve_lm:create_onnx_lm_app",
                          summary="OpenAI-compatible chat/completions API on ONNX Runtime (needs forge-hf)"))
