"""Exporter ``gguf``: a ``causal-lm`` or ``causal-lm-adapter`` (merged in memory) → a ``gguf-causal-lm`` artifact
holding one GGUF file for llama.cpp, Ollama and LM Studio, parity-checked before it is kept.

    forge export runs/sft-1 --format gguf                     # f16
    forge export runs/sft-1 --format gguf --quantize q8_0     # or f32, bf16, q4_0, q4_1, q5_0, q5_1

The file carries the tokenizer, the chat template, BOS/EOS/PAD ids and the generation defaults. The export loads
its own GGUF back with transformers (``gguf_file=``) and compares it with the merged model on held-out prompts (the
run's eval split, ``heldout.jsonl``; ``--set prompts=FILE`` to choose): the tokenizer must split every prompt the
same way, the max abs logit difference must stay within ``tolerance`` (f32/f16/bf16), greedy-token agreement must
reach ``min_token_agreement`` (quantized types), and greedy generation must end with EOS wherever the merged
model's does. When ``llama-cpp-python`` is installed the same check runs through llama.cpp itself. Outside the
limits the export is refused and nothing is left behind. Defaults: see ``TOLERANCE`` and ``MIN_TOKEN_AGREEMENT``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import forge

from forge_hf.causal_lm import (
    CausalLM,
    Continuation,
    Prompt,
    eos_budget,
    greedy_reference,
    load_causal_lm,
    model_type,
    parity_prompts,
)
from forge_hf.gguf_file import FLOAT_TYPES, check_architecture, check_quant_type, write_gguf

OPTIONS = {"quantize", "tolerance", "min_token_agreement", "samples", "max_new_tokens", "prompts", "require_eos",
           "name", "llama_cpp"}
# Max abs logit difference against the merged fp32 model, per file type (transformers dequantizes to fp32, so this
# is the weights' rounding; SmolLM2-135M measures 0.15 for f16 and 0.73 for bf16, see docs/export.md).
TOLERANCE = {"f32": 1e-3, "f16": 0.25, "bf16": 1.5}
# Share of greedy tokens the export must predict as the merged model does (teacher-forced on its continuation).
# q8_0 measures 94-98% on SmolLM2-135M (llama.cpp and transformers alike); 0.9 catches a broken file, not rounding.
MIN_TOKEN_AGREEMENT = {"f32": 0.99, "f16": 0.98, "bf16": 0.95, "q8_0": 0.9, "q5_1": 0.85, "q5_0": 0.85,
                       "q4_1": 0.8, "q4_0": 0.8}


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise forge.ForgeError(f"--set {name}={value}: expected true or false")


def _number(options: dict[str, Any], name: str, default: float) -> float:
    try:
        return float(options.get(name, default))
    except (TypeError, ValueError):
        raise forge.ForgeError(f"--set {name}={options[name]}: expected a number") from None


def limits(options: dict[str, Any], quantize: str) -> dict[str, Any]:
    """The parity limits of one export, from ``--set`` options and the documented defaults."""
    return {"tolerance": _number(options, "tolerance", TOLERANCE.get(quantize, float("inf"))),
            "min_token_agreement": _number(options, "min_token_agreement", MIN_TOKEN_AGREEMENT[quantize]),
            "require_eos": _flag(options.get("require_eos", True), "require_eos"),
            "gates_logits": quantize in FLOAT_TYPES}


def compare(name: str, expected: list[Continuation], prompts: list[Prompt], logits_of: Any, generate: Any,
            reference_logits: list[Any], tokenizer_matches: list[bool], is_stop: Any) -> dict[str, Any]:
    """Figures of one backend against the merged model: tokenizer agreement, max abs logit difference and
    greedy-token agreement (teacher-forced on the merged model's continuation), and EOS kept."""
    import numpy as np

    max_diff, agree, positions, eos_reference, eos_kept = 0.0, 0, 0, 0, 0
    lost: list[int] = []
    for index, (prompt, reference, ref_logits) in enumerate(zip(prompts, expected, reference_logits, strict=True)):
        sequence = prompt.ids + reference.tokens
        logits = np.asarray(logits_of(sequence), dtype=np.float64)
        max_diff = max(max_diff, float(np.abs(logits - ref_logits).max()))
        start = len(prompt.ids) - 1
        predicted = logits[start:start + len(reference.tokens)].argmax(-1)
        agree += int((predicted == np.asarray(reference.tokens)).sum())
        positions += len(reference.tokens)
        if reference.stopped_at_eos:
            eos_reference += 1
            produced = generate(prompt.ids, eos_budget(reference))
            if produced and is_stop(produced[-1]):
                eos_kept += 1
            else:
                lost.append(index)
    return {"backend": name, "prompts": len(prompts), "positions": positions,
            "tokenizer_match": sum(tokenizer_matches) / max(len(tokenizer_matches), 1),
            "max_abs_logit_diff": max_diff, "token_agreement": agree / max(positions, 1),
            "eos_reference": eos_reference, "eos_kept": eos_kept, "eos_lost_prompts": lost}


def enforce(figures: dict[str, Any], limit: dict[str, Any], quantize: str) -> None:
    """Refuse an export whose figures are outside the limits (one line saying which and by how much)."""
    backend = figures["backend"]
    if figures["tokenizer_match"] < 1:
        raise forge.ForgeError(f"gguf parity ({backend}): the GGUF's tokenizer splits "
                               f"{1 - figures['tokenizer_match']:.0%} of the held-out prompts differently")
    if limit["gates_logits"] and figures["max_abs_logit_diff"] > limit["tolerance"]:
        raise forge.ForgeError(f"gguf parity ({backend}): max abs logit difference "
                               f"{figures['max_abs_logit_diff']:.3g} > tolerance {limit['tolerance']} ({quantize})")
    if figures["token_agreement"] < limit["min_token_agreement"]:
        raise forge.ForgeError(f"gguf parity ({backend}): greedy-token agreement {figures['token_agreement']:.3f} "
                               f"< min_token_agreement {limit['min_token_agreement']} ({quantize})")
    if limit["require_eos"] and figures["eos_kept"] < figures["eos_reference"]:
        raise forge.ForgeError(f"gguf parity ({backend}): greedy generation no longer ends with EOS on "
                               f"{figures['eos_reference'] - figures['eos_kept']} of {figures['eos_reference']} "
                               "held-out prompts where the merged model's does")


def reload_with_transformers(path: Path) -> tuple[Any, Any]:
    """The GGUF loaded back by transformers (dequantized to fp32), with the metadata its GGUF reader leaves out
    (``attention.key_length``) applied from the file."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    reader = GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    key_length = reader.fields.get(f"{arch}.attention.key_length")
    if key_length is not None:
        config.head_dim = int(key_length.contents())
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, config=config,
                                                 dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


def transformers_figures(lm: CausalLM, path: Path, prompts: list[Prompt], expected: list[Continuation],
                         reference_logits: list[Any]) -> dict[str, Any]:
    import torch

    model, tokenizer = reload_with_transformers(path)
    eos = set(lm.eos_token_ids)

    def logits_of(ids: list[int]) -> Any:
        with torch.inference_mode():
            return model(torch.tensor([ids])).logits[0].numpy()

    def generate(ids: list[int], budget: int) -> list[int]:
        tensor = torch.tensor([ids])
        with torch.inference_mode():
            out = model.generate(tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=budget,
                                 do_sample=False, eos_token_id=sorted(eos), pad_token_id=lm.tokenizer.pad_token_id)
        return [int(t) for t in out[0, len(ids):]]

    matches = [tokenizer(p.text, add_special_tokens=False)["input_ids"]
               == lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
    return compare("transformers", expected, prompts, logits_of, generate, reference_logits, matches,
                   lambda token: token in eos)


def llama_cpp_figures(lm: CausalLM, path: Path, prompts: list[Prompt], expected: list[Continuation],
                      reference_logits: list[Any]) -> dict[str, Any]:
    from forge_hf.llama_cpp_runtime import LlamaCppCausalLM

    longest = max(len(p.ids) + eos_budget(e) for p, e in zip(prompts, expected, strict=True))
    runtime = LlamaCppCausalLM(path, n_ctx=longest + 8, logits_all=True)
    matches = [runtime.tokenize(p.text) == lm.tokenizer(p.text, add_special_tokens=False)["input_ids"]
               for p in prompts]
    try:
        return compare(f"llama.cpp {runtime.version}", expected, prompts, runtime.logits,
                       lambda ids, budget: list(runtime.stream(ids, max_new_tokens=budget)), reference_logits,
                       matches, runtime.is_stop)
    finally:
        runtime.close()


def modelfile(gguf_name: str, stops: list[str], sampling: dict[str, Any]) -> str:
    """An Ollama Modelfile for the export (``ollama create NAME -f Modelfile``). Ollama reads the chat template
    from the GGUF; the stop tokens and sampling defaults are repeated here so they show and can be edited."""
    lines = ["# ollama create my-model -f Modelfile && ollama run my-model", f"FROM ./{gguf_name}"]
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    names = {"temp": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
             "penalty_repeat": "repeat_penalty"}
    lines += [f"PARAMETER {names[key]} {value}" for key, value in sampling.items() if key in names]
    return "\n".join(lines) + "\n"


def export(artifact: forge.Artifact, output_dir: Path, options: dict[str, Any]) -> forge.ArtifactResult:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        takes = ", ".join(sorted(OPTIONS - {"quantize"}))
        raise forge.ForgeError(f"--set {unknown[0]}: the gguf exporter takes {takes}")
    quantize = check_quant_type(str(options.get("quantize") or "f16"))
    limit = limits(options, quantize)
    check_architecture(model_type(artifact))  # before any weight is loaded
    use_llama_cpp = _flag(options.get("llama_cpp", True), "llama_cpp")
    samples = int(_number(options, "samples", 8))
    max_new_tokens = int(_number(options, "max_new_tokens", 48))
    lm = load_causal_lm(artifact)
    prompts, prompt_source = parity_prompts(artifact, lm.tokenizer, samples, options.get("prompts"))
    expected = greedy_reference(lm, prompts, max_new_tokens)
    import torch

    reference_logits = []
    for prompt, continuation in zip(prompts, expected, strict=True):
        with torch.inference_mode():
            reference_logits.append(lm.model(torch.tensor([prompt.ids + continuation.tokens])).logits[0].numpy())
    name = str(options.get("name") or artifact.manifest.get("base_model") or artifact.path.name)
    gguf_name = f"model-{quantize}.gguf"
    path = output_dir / gguf_name
    written = write_gguf(lm.model, lm.tokenizer, lm.generation_config, path, quantize,
                         name=f"{Path(name).name} (forge fine-tune)", eos_token_ids=lm.eos_token_ids)
    parity: dict[str, Any] = {"prompt_source": prompt_source, "max_new_tokens": max_new_tokens, **limit}
    figures = transformers_figures(lm, path, prompts, expected, reference_logits)
    parity["transformers"] = figures
    enforce(figures, limit, quantize)
    if not use_llama_cpp:
        parity["llama_cpp"] = {"skipped": "--set llama_cpp=false"}
    elif importlib.util.find_spec("llama_cpp") is None:
        parity["llama_cpp"] = {"skipped": "llama-cpp-python is not installed (pip install llama-cpp-python)"}
    else:
        cpp = llama_cpp_figures(lm, path, prompts, expected, reference_logits)
        parity["llama_cpp"] = cpp
        # llama.cpp computes in its own precision (f16 accumulators, 8-bit activations for q8_0 dot products):
        # its logits are not held to the dequantized tolerance, its greedy tokens and stops are.
        enforce(cpp, {**limit, "gates_logits": False}, quantize)
    stops = sorted({lm.tokenizer.convert_ids_to_tokens(i) for i in lm.eos_token_ids})
    (output_dir / "Modelfile").write_text(modelfile(gguf_name, stops, written["sampling_defaults"]), encoding="utf-8")
    return forge.ArtifactResult(kind="gguf-causal-lm", metrics=dict(artifact.manifest.get("metrics", {})), extra={
        "gguf_file": gguf_name, "quantization": quantize, "merged_from": lm.origin,
        "base_model": artifact.manifest.get("base_model"), "gguf": written, "parity": parity})
