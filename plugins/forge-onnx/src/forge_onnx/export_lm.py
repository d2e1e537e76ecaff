"""ONNX export of a causal LM: ``causal-lm`` / ``causal-lm-adapter`` (merged in memory) → ``onnx-causal-lm``.

    forge export runs/sft-1 --format onnx                  # fp32 decoder with KV cache
    forge export runs/sft-1 --format onnx --quantize int8  # + onnxruntime dynamic int8 quantization

The decoder is traced by transformers' own ONNX exporter (``transformers.exporters.OnnxExporter``, torch's dynamo
exporter underneath) as one graph with a KV cache: ``input_ids``, ``attention_mask``, ``position_ids`` and one
key/value per layer in, ``logits`` and the grown cache out; an empty cache runs the prompt. The tokenizer, chat
template, config and generation config are written beside it; :mod:`forge_onnx.lm_runtime` generates with it.

Parity on held-out prompts (the run's ``heldout.jsonl``): fp32 must stay within ``tolerance`` max abs logit
difference (default 1e-3) and greedy generation through :class:`~forge_onnx.lm_runtime.OnnxCausalLM` must end with
EOS where the merged model's does. int8 records held-out perplexity and greedy-token agreement against the merged
model and is refused when perplexity rises by more than ``max_perplexity_increase`` (relative, default 0.05) or
agreement falls under ``min_token_agreement`` (default 0.9).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from forge.artifacts import Artifact, ArtifactResult
from forge.errors import ForgeError

LM_OPTIONS = {"quantize", "tolerance", "max_perplexity_increase", "min_token_agreement", "samples",
              "max_new_tokens", "prompts", "require_eos", "per_channel", "opset", "int8_method", "block_size",
              "rewrite"}
EXTERNAL_DATA_BYTES = 1_500_000_000  # past this, weights go to model.onnx.data (protobuf stops at 2 GB)


def _needs_hf() -> Any:
    try:
        import forge_hf.causal_lm as causal_lm
    except ImportError:
        raise ForgeError("exporting a causal LM needs forge-hf: pip install 'forge-onnx[hf]'") from None
    return causal_lm


def _number(options: dict[str, Any], name: str, default: float) -> float:
    try:
        return float(options.get(name, default))
    except (TypeError, ValueError):
        raise ForgeError(f"--set {name}={options[name]}: expected a number") from None


def _flag(options: dict[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ForgeError(f"--set {name}={value}: expected true or false")


def trace_decoder(model: Any, tokenizer: Any, opset: int | None) -> Any:
    """The decode step with KV cache as an ``onnx_ir.Model``, traced on two padded sample prompts so batch, query
    length and cache length stay symbolic."""
    from transformers.exporters import OnnxConfig, OnnxExporter
    from transformers.exporters.utils import decompose_for_generation

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        sample = dict(tokenizer(["the quick brown fox jumps over", "hello"], return_tensors="pt", padding=True))
    finally:
        tokenizer.padding_side = side
    decoder, inputs = decompose_for_generation(model, sample, multi_token_decode=True)["decode"]
    config = OnnxConfig(dynamic=True, opset_version=opset)
    return OnnxExporter().export(decoder, inputs, config).program  # type: ignore[arg-type]  # a PreTrainedModel


def default_opset() -> int | None:
    """Opset 23 where onnxruntime runs its ``RMSNormalization``, ``RotaryEmbedding`` and ``Attention`` (1.23 on),
    so each of those is one kernel instead of a dozen; else the exporter's default."""
    import onnxruntime

    version = tuple(int(part) for part in onnxruntime.__version__.split(".")[:2] if part.isdigit())
    return 23 if version >= (1, 23) else None


def rewrite_decoder(program: Any, config: Any) -> tuple[Any, dict[str, int]]:
    """:mod:`forge_onnx.lm_graph`'s rewrites (exact up to rounding) on a traced decoder."""
    import onnx_ir

    from forge_onnx.lm_graph import drop_repeat_kv, fuse_group_query_attention, pack_matmuls

    proto = onnx_ir.to_proto(program)
    counts = {"repeat_kv_dropped": drop_repeat_kv(proto), "matmuls_packed": pack_matmuls(proto)}
    heads = int(config.num_attention_heads)
    counts["group_query_attention"] = fuse_group_query_attention(
        proto, heads, int(getattr(config, "num_key_value_heads", None) or heads),
        int(getattr(config, "max_position_embeddings", None) or 4096))
    return onnx_ir.from_proto(proto), counts


def save_onnx(program: Any, path: Path) -> None:
    import onnx_ir

    size = sum(v.const_value.nbytes for v in program.graph.initializers.values() if v.const_value is not None)
    if size > EXTERNAL_DATA_BYTES:
        onnx_ir.save(program, str(path), external_data=f"{path.name}.data")
    else:
        onnx_ir.save(program, str(path))


INT8_METHODS = ("blockwise", "dynamic")


def tie_lm_head(model: Any) -> int:
    """Give a head computed from a tied embedding (``MatMul(x, Transpose(embedding))``) its own transposed weight,
    so the quantizer sees a constant weight; returns how many heads were untied."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    untied = 0
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] in initializers:
            continue
        source = producers.get(node.input[1])
        if source is None or source.op_type != "Transpose" or source.input[0] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[source.input[0]])
        if weight.ndim != 2:
            continue
        name = f"{source.input[0]}.transposed"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), name))
        node.input[1] = name
        untied += 1
        if not any(source.output[0] in other.input for other in graph.node):
            graph.node.remove(source)
    return untied


def quantize_lm_int8(fp32: Path, int8: Path, per_channel: bool, method: str = "blockwise", block_size: int = 32
                     ) -> None:
    """int8 weights for every MatMul with a constant weight (the LM head included).

    ``blockwise`` (default): onnxruntime's ``MatMulNBits`` with 8-bit symmetric weights in blocks of ``block_size``
    along the input dimension, activations quantized to int8 per block on the fly (``accuracy_level=4``), so an
    outlier costs only its block. ``dynamic``: ``quantize_dynamic`` (``MatMulInteger``; one uint8 scale per
    activation tensor, which SmolLM2's activation outliers do not survive: docs/export.md)."""
    import onnx

    external = (fp32.parent / f"{fp32.name}.data").exists()
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul"], use_external_data_format=external)
        return
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(fp32))
    tie_lm_head(model)
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=block_size, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(int8), external)


def perplexity(logits_of: Any, sequences: list[tuple[list[int], int]]) -> float:
    """exp(mean NLL) over the scored tokens of each (ids, first scored position) pair."""
    total, count = 0.0, 0
    for ids, start in sequences:
        logits = np.asarray(logits_of(ids), dtype=np.float64)[:-1]
        shifted = logits - logits.max(-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        targets = np.asarray(ids[1:])
        picked = logp[np.arange(len(targets)), targets][max(start - 1, 0):]
        total -= float(picked.sum())
        count += len(picked)
    return math.exp(total / max(count, 1))


def export_causal_lm(artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> ArtifactResult:
    unknown = sorted(set(options) - LM_OPTIONS)
    if unknown:
        raise ForgeError(f"--set {unknown[0]}: the onnx exporter takes, for causal LMs, "
                         f"{', '.join(sorted(LM_OPTIONS - {'quantize'}))}")
    tolerance = _number(options, "tolerance", 1e-3)
    max_increase = _number(options, "max_perplexity_increase", 0.05)
    min_agreement = _number(options, "min_token_agreement", 0.9)
    require_eos = _flag(options, "require_eos", True)
    per_channel = _flag(options, "per_channel", True)
    method = str(options.get("int8_method", "blockwise"))
    if method not in INT8_METHODS:
        raise ForgeError(f"--set int8_method={method}: expected one of {', '.join(INT8_METHODS)}")
    block_size = int(_number(options, "block_size", 32))
    if block_size < 16 or block_size & (block_size - 1):
        raise ForgeError(f"--set block_size={block_size}: expected a power of two, at least 16")
    samples = int(_number(options, "samples", 8))
    max_new_tokens = int(_number(options, "max_new_tokens", 48))
    opset = int(options["opset"]) if "opset" in options else default_opset()
    rewrite = _flag(options, "rewrite", True)
    causal_lm = _needs_hf()
    import torch

    from forge_onnx.lm_runtime import OnnxCausalLM

    lm = causal_lm.load_causal_lm(artifact)
    prompts, prompt_source = causal_lm.parity_prompts(artifact, lm.tokenizer, samples, options.get("prompts"))
    expected = causal_lm.greedy_reference(lm, prompts, max_new_tokens)

    def torch_logits(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            return lm.model(torch.tensor([ids])).logits[0].numpy()

    fp32 = output_dir / "model.fp32.onnx"
    program = trace_decoder(lm.model, lm.tokenizer, opset)
    graph: dict[str, Any] = {"opset": opset or next(v for d, v in program.opset_imports.items() if d == "")}
    if rewrite:
        program, counts = rewrite_decoder(program, lm.model.config)
        graph.update(counts)
    save_onnx(program, fp32)
    del program
    lm.tokenizer.save_pretrained(output_dir)
    lm.model.config.save_pretrained(output_dir)
    lm.generation_config.eos_token_id = lm.eos_token_ids  # the runtime stops where the merged model stops
    lm.generation_config.save_pretrained(output_dir)
    final = output_dir / "model.onnx"
    quantized = options.get("quantize") == "int8"

    def figures(runtime: OnnxCausalLM) -> dict[str, Any]:
        max_diff, agree, positions, eos_ref, eos_kept, exact = 0.0, 0, 0, 0, 0, 0
        for prompt, reference in zip(prompts, expected, strict=True):
            sequence = prompt.ids + reference.tokens
            logits = runtime.logits(sequence)
            max_diff = max(max_diff, float(np.abs(logits - torch_logits(sequence)).max()))
            start = len(prompt.ids) - 1
            predicted = logits[start:start + len(reference.tokens)].argmax(-1)
            agree += int((predicted == np.asarray(reference.tokens)).sum())
            positions += len(reference.tokens)
            budget = causal_lm.eos_budget(reference) if reference.stopped_at_eos else len(reference.tokens)
            produced = runtime.generate(prompt.ids, max_new_tokens=budget)
            exact += produced == reference.tokens
            if reference.stopped_at_eos:
                eos_ref += 1
                eos_kept += bool(produced) and produced[-1] in runtime.stop_ids
        return {"prompts": len(prompts), "positions": positions, "max_abs_logit_diff": max_diff,
                "token_agreement": agree / max(positions, 1), "greedy_exact_match": exact / max(len(prompts), 1),
                "eos_reference": eos_ref, "eos_kept": eos_kept}

    def check_eos(found: dict[str, Any], label: str) -> None:
        if require_eos and found["eos_kept"] < found["eos_reference"]:
            raise ForgeError(f"onnx parity ({label}): greedy generation no longer ends with EOS on "
                             f"{found['eos_reference'] - found['eos_kept']} of {found['eos_reference']} held-out "
                             "prompts where the merged model's does")

    from forge_onnx.export import session

    if not quantized:
        fp32.rename(final)
    runtime32 = OnnxCausalLM(output_dir, session=session(fp32 if quantized else final))
    fp32_figures = figures(runtime32)
    parity: dict[str, Any] = {"prompt_source": prompt_source, "max_new_tokens": max_new_tokens,
                              "tolerance": tolerance, "fp32": fp32_figures}
    if fp32_figures["max_abs_logit_diff"] > tolerance:
        raise ForgeError(f"onnx parity: max abs logit difference {fp32_figures['max_abs_logit_diff']:.3g} > "
                         f"tolerance {tolerance}")
    check_eos(fp32_figures, "fp32")
    if quantized:
        quantize_lm_int8(fp32, final, per_channel, method, block_size)
        for leftover in (fp32, fp32.parent / f"{fp32.name}.data"):
            leftover.unlink(missing_ok=True)
        del runtime32
        runtime8 = OnnxCausalLM(output_dir, session=session(final))
        int8_figures = figures(runtime8)
        scored = [(p.full_ids, len(p.ids)) if p.full_ids else (p.ids + r.tokens, len(p.ids))
                  for p, r in zip(prompts, expected, strict=True)]
        source_ppl = perplexity(torch_logits, scored)
        int8_ppl = perplexity(runtime8.logits, scored)
        increase = int8_ppl / source_ppl - 1
        int8_figures.update({"source_perplexity": source_ppl, "int8_perplexity": int8_ppl,
                             "perplexity_increase": increase,
                             "perplexity_on": "held-out answers" if all(p.full_ids for p in prompts)
                             else "the merged model's greedy answers"})
        parity.update({"int8": int8_figures, "max_perplexity_increase": max_increase,
                       "min_token_agreement": min_agreement, "int8_method": method,
                       **({"per_channel": per_channel} if method == "dynamic" else {"block_size": block_size})})
        if increase > max_increase:
            raise ForgeError(f"int8 held-out perplexity {int8_ppl:.3f} is {increase:.1%} above the merged model's "
                             f"{source_ppl:.3f} (max_perplexity_increase {max_increase})")
        if int8_figures["token_agreement"] < min_agreement:
            raise ForgeError(f"int8 greedy-token agreement {int8_figures['token_agreement']:.3f} < "
                             f"min_token_agreement {min_agreement}")
        check_eos(int8_figures, "int8")
    if (artifact.path / "heldout.jsonl").exists():
        shutil.copy(artifact.path / "heldout.jsonl", output_dir / "heldout.jsonl")
    io = {"inputs": [i.name for i in runtime_inputs(final)], "stop_ids": lm.eos_token_ids}
    return ArtifactResult(kind="onnx-causal-lm", metrics=dict(artifact.manifest.get("metrics", {})), extra={
        "quantization": "int8" if quantized else "fp32", "merged_from": lm.origin,
        "base_model": artifact.manifest.get("base_model"), "model_type": lm.model.config.model_type,
        "decoder": io, "graph": graph, "chat_template": bool(getattr(lm.tokenizer, "chat_template", None)),
        "parity": parity})


def runtime_inputs(path: Path) -> list[Any]:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.input)
