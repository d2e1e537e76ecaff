"""Write a transformers causal LM (Llama, Qwen2, Qwen3) as a GGUF file with the ``gguf`` package: llama.cpp's own
tensor names (``gguf.TensorNameMap``), quantization (``gguf.quants``) and metadata keys, tokenizer, chat template,
special token ids and generation defaults included. No llama.cpp build is needed.

    from forge_hf.gguf_file import write_gguf
    summary = write_gguf(model, tokenizer, generation_config, Path("model-q8_0.gguf"), "q8_0", name="my-model")

Follows llama.cpp's ``convert_hf_to_gguf.py``: Llama's q/k projections are permuted to the rotary layout llama.cpp
expects (Qwen2/Qwen3 use the NEOX layout and are written as they are); 1-D tensors and norms stay F32; quantized
files keep the token embedding and output matrix at Q8_0 for the 4/5-bit types (where ``llama-quantize`` would use
Q6_K, which ``gguf.quants`` cannot write).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.errors import ForgeError

# transformers model_type -> llama.cpp architecture name
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
QUANT_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
FLOAT_TYPES = ("f32", "f16", "bf16")


def supported_architectures() -> str:
    return ", ".join(f"{name} ({ARCHITECTURES[name]})" for name in ARCHITECTURES)


def check_architecture(model_type: str) -> str:
    """The llama.cpp architecture for a transformers ``model_type``, or a one-line error naming the supported ones."""
    if model_type not in ARCHITECTURES:
        raise ForgeError(f"gguf export: architecture '{model_type}' is not supported; supported: "
                         f"{supported_architectures()}")
    return ARCHITECTURES[model_type]


def check_quant_type(quantize: str) -> str:
    if quantize not in QUANT_TYPES:
        raise ForgeError(f"--quantize {quantize}: the gguf exporter knows {', '.join(QUANT_TYPES)}")
    return quantize


@dataclass
class TokenizerSpec:
    """What llama.cpp needs to rebuild a tokenizer: model (``gpt2`` byte-level BPE or ``llama`` SentencePiece),
    pre-tokenizer, tokens, scores, types and merges."""

    model: str
    pre: str | None
    tokens: list[str]
    scores: list[float] | None
    types: list[int]
    merges: list[str]
    add_space_prefix: bool | None


def _merges(model: dict[str, Any]) -> list[str]:
    merges = model.get("merges") or []
    if merges and isinstance(merges[0], list):
        # tokenizers >= 0.20 stores pairs; llama.cpp reads "a b", with spaces inside a part moved up by 256
        # (as gguf.SpecialVocab does)
        return [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
                for pair in merges]
    return [str(m) for m in merges]


def _component_types(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        inner = node.get("pretokenizers") or node.get("decoders") or node.get("normalizers") or []
        return [part for child in inner for part in _component_types(child)]
    return [node]


def _bpe_pre(pre_tokenizer: dict[str, Any] | None) -> str:
    """The llama.cpp pre-tokenizer name for a byte-level BPE ``pre_tokenizer`` (llama.cpp applies the same
    split regexes by name)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    parts = _component_types(pre_tokenizer)
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"  # SmolLM's tokenizer: each digit on its own, then GPT-2's split
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        pattern = (parts[0].get("pattern") or {}).get("Regex")
        for name in ("qwen2", "llama-bpe"):
            if pattern == GGUF_PRE_TOKENIZER_SPLITS[name]:
                return name
    raise ForgeError(f"gguf export: the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) is not "
                     "one llama.cpp knows by name; supported: GPT-2 byte-level, SmolLM, Qwen2, Llama 3")


def tokenizer_spec(tokenizer: Any, vocab_size: int) -> TokenizerSpec:
    """Read a fast tokenizer's ``tokenizer.json`` into llama.cpp's terms (byte-level BPE → ``gpt2``, BPE with byte
    fallback, as SentencePiece models are converted → ``llama``), padded to the model's ``vocab_size``."""
    from gguf import TokenType

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ForgeError("gguf export: needs a fast tokenizer (tokenizer.json)")
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise ForgeError(f"gguf export: tokenizer model {model.get('type')!r} is not supported (BPE and "
                         "SentencePiece-style BPE are)")
    byte_fallback = bool(model.get("byte_fallback"))
    decoders = [d.get("type") for d in _component_types(spec.get("decoder"))]
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = {t["content"]: t for t in spec.get("added_tokens") or []}
    for content, token in added.items():
        vocab[content] = int(token["id"])
    size = max(vocab_size, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(TokenType.UNUSED)] * size
    for text, index in vocab.items():
        tokens[index] = text
        types[index] = int(TokenType.NORMAL)
    for token in added.values():
        types[int(token["id"])] = int(TokenType.CONTROL if token.get("special") else TokenType.USER_DEFINED)
    merges = _merges(model)
    if not byte_fallback and "ByteLevel" in decoders:
        return TokenizerSpec(model="gpt2", pre=_bpe_pre(spec.get("pre_tokenizer")), tokens=tokens, scores=None,
                             types=types, merges=merges, add_space_prefix=None)
    if byte_fallback:
        # SentencePiece BPE (Llama 2, Mistral, TinyLlama): llama.cpp's SPM tokenizer merges by score, highest
        # first, so a token's score is minus the rank of the merge that makes it.
        import re

        rank = {m.replace(" ", ""): i for i, m in enumerate(merges)}
        scores = [-float(rank.get(t, 0)) if types[i] == int(TokenType.NORMAL) else -1000.0
                  for i, t in enumerate(tokens)]
        for i, text in enumerate(tokens):
            if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
                types[i] = int(TokenType.BYTE)
        unk = model.get("unk_token")
        if unk in vocab:
            types[vocab[unk]] = int(TokenType.UNKNOWN)
        pre_parts = _component_types(spec.get("pre_tokenizer"))
        normalizers = _component_types(spec.get("normalizer"))
        prefix = any(p.get("type") == "Metaspace" and p.get("prepend_scheme", "always") != "never"
                     for p in pre_parts) or any(n.get("type") == "Prepend" for n in normalizers)
        return TokenizerSpec(model="llama", pre="default", tokens=tokens, scores=scores, types=types, merges=merges,
                             add_space_prefix=prefix)
    raise ForgeError(f"gguf export: tokenizer decoder {' + '.join(map(str, decoders)) or 'none'} is neither "
                     "byte-level BPE nor SentencePiece-style BPE")


def _adds_special(tokenizer: Any, token_id: int | None, first: bool) -> bool:
    """Whether the tokenizer puts ``token_id`` at the start (``first``) or end of what it encodes."""
    if token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and (ids[0] if first else ids[-1]) == token_id


def _permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """llama.cpp's rotary layout for Llama q/k projections (``LlamaModel.permute`` in convert_hf_to_gguf.py)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _rope_theta(config: Any) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    theta = getattr(config, "rope_theta", None) or parameters.get("rope_theta")
    return float(theta if theta is not None else 10000.0)


def _check_rope(config: Any) -> None:
    parameters = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = parameters.get("rope_type", parameters.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ForgeError(f"gguf export: rope scaling '{rope_type}' is not supported yet (plain RoPE is)")


def _file_type(quantize: str) -> int:
    from gguf import LlamaFileType

    return int({"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "bf16": LlamaFileType.MOSTLY_BF16,
                "q8_0": LlamaFileType.MOSTLY_Q8_0, "q4_0": LlamaFileType.MOSTLY_Q4_0,
                "q4_1": LlamaFileType.MOSTLY_Q4_1, "q5_0": LlamaFileType.MOSTLY_Q5_0,
                "q5_1": LlamaFileType.MOSTLY_Q5_1}[quantize])


def _tensor_type(gguf_name: str, n_dims: int, quantize: str) -> Any:
    from gguf import GGMLQuantizationType as Q

    if n_dims <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight"):
        return Q.F32
    types = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1,
             "q5_0": Q.Q5_0, "q5_1": Q.Q5_1}
    if quantize in ("q4_0", "q4_1", "q5_0", "q5_1") and gguf_name in ("token_embd.weight", "output.weight"):
        return Q.Q8_0
    return types[quantize]


def sampling_defaults(generation_config: Any) -> dict[str, float | int]:
    """The sampling settings a generation config sets explicitly (GGUF ``general.sampling.*``)."""
    if generation_config is None:
        return {}
    explicit = generation_config.to_diff_dict()
    out: dict[str, float | int] = {}
    if explicit.get("do_sample") is False:
        out["temp"] = 0.0
    elif explicit.get("do_sample"):
        for key, name in (("temperature", "temp"), ("top_p", "top_p"), ("min_p", "min_p")):
            if explicit.get(key) is not None:
                out[name] = float(explicit[key])
        if explicit.get("top_k") is not None:
            out["top_k"] = int(explicit["top_k"])
    if explicit.get("repetition_penalty") is not None:
        out["penalty_repeat"] = float(explicit["repetition_penalty"])
    return out


def write_gguf(model: Any, tokenizer: Any, generation_config: Any, path: Path, quantize: str, name: str,
               eos_token_ids: list[int] | None = None) -> dict[str, Any]:
    """Write ``model`` to ``path`` as GGUF (``quantize``: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1) and return
    what was written: architecture, tensor types, tokenizer, special ids, chat template, sampling defaults."""
    import gguf
    import numpy as np

    config = model.config
    arch = check_architecture(config.model_type)
    check_quant_type(quantize)
    _check_rope(config)
    n_head, n_kv = int(config.num_attention_heads), int(config.num_key_value_heads or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    n_layers = int(config.num_hidden_layers)
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_file_type(_file_type(quantize))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if arch == "llama":
        writer.add_vocab_size(int(config.vocab_size))
        writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head or arch == "qwen3":
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)

    spec = tokenizer_spec(tokenizer, int(config.vocab_size))
    writer.add_tokenizer_model(spec.model)
    if spec.pre:
        writer.add_tokenizer_pre(spec.pre)
    writer.add_token_list(spec.tokens)
    if spec.scores is not None:
        writer.add_token_scores(spec.scores)
    writer.add_token_types(spec.types)
    if spec.merges:
        writer.add_token_merges(spec.merges)
    if spec.add_space_prefix is not None:
        writer.add_add_space_prefix(spec.add_space_prefix)
    eos_ids = list(eos_token_ids or ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []))
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id in eos_ids else (eos_ids[0] if eos_ids else None)
    special = {"bos": tokenizer.bos_token_id, "eos": eos, "unk": tokenizer.unk_token_id,
               "pad": tokenizer.pad_token_id}
    others = [i for i in eos_ids if i != eos]
    if others:
        special["eot"] = others[0]  # llama.cpp stops at EOS, EOT and EOM: a second stop id of the model
    for kind, token_id in special.items():
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    writer.add_add_bos_token(_adds_special(tokenizer, tokenizer.bos_token_id, first=True))
    writer.add_add_eos_token(_adds_special(tokenizer, tokenizer.eos_token_id, first=False))
    template = getattr(tokenizer, "chat_template", None)
    if template:
        writer.add_chat_template(template if isinstance(template, str) else
                                 [{"name": k, "template": v} for k, v in template.items()])
    sampling = sampling_defaults(generation_config)
    for key, value in sampling.items():
        getattr(writer, f"add_sampling_{key}")(value)

    tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    types: dict[str, int] = {}
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses token_embd for the output when there is no output.weight
        gguf_name = tensor_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ForgeError(f"gguf export: no llama.cpp name for tensor {hf_name} ({arch})")
        data = tensor.detach().to("cpu").float()
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, n_head, n_head)
        elif arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, n_head, n_kv)
        array = data.numpy()
        qtype = _tensor_type(gguf_name, array.ndim, quantize)
        with np.errstate(divide="ignore", invalid="ignore"):  # all-zero blocks: gguf.quants handles them
            try:
                packed = gguf.quants.quantize(array, qtype)
            except gguf.QuantError:  # a row length that is not a multiple of the block size (32)
                qtype = gguf.GGMLQuantizationType.F16
                packed = gguf.quants.quantize(array, qtype)
        writer.add_tensor(gguf_name, packed, raw_dtype=qtype)
        types[qtype.name] = types.get(qtype.name, 0) + 1
        del array
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "architecture": arch, "file_type": quantize, "tensor_types": types, "tokenizer_model": spec.model,
        "tokenizer_pre": spec.pre, "vocab_size": len(spec.tokens),
        "special_token_ids": {k: int(v) for k, v in special.items() if v is not None},
        "chat_template": bool(template), "sampling_defaults": sampling,
    }
