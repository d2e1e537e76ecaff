"""Provider ``unsloth``: loads through Unsloth's ``FastLanguageModel`` (4-bit included) and applies its LoRA patching
and gradient checkpointing, so the forge-hf recipes train with Unsloth's kernels.

Model names resolve like the ``hf`` provider's (hub ids, local directories, GGUF files, offline aliases).
Anything Unsloth cannot do here becomes :class:`ProviderUnavailable`: when the user did not ask for unsloth by
name, forge falls back to ``hf`` and records why.
"""

from __future__ import annotations

import os

from forge.models import LoadedModel, ModelRequest, ProviderUnavailable

from forge_unsloth.availability import TRY_CPU_ENV, unavailable_reason

# Recipes that train better through hf, measured on an H100 (docs/unsloth.md): the reason goes into the manifest.
ROUTED_TO_HF = {
    "grpo": "forge routes grpo to hf: Unsloth's GRPO path without vLLM did not finish its first step in ~100 s on "
            "the 135M model (H100, 2026-11-23), where hf takes seconds",
}

# Unsloth's LoRA targets for decoder blocks: what "all-linear" means to it.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load(request: ModelRequest) -> LoadedModel:
    reason = unavailable_reason()
    if reason:
        raise ProviderUnavailable(reason)
    if request.task != "causal-lm":
        raise ProviderUnavailable(f"unsloth serves causal LMs, not {request.task}")
    if request.options.get("recipe") in ROUTED_TO_HF:
        raise ProviderUnavailable(ROUTED_TO_HF[request.options["recipe"]])
    if os.environ.get(TRY_CPU_ENV) == "1":
        os.environ.setdefault("UNSLOTH_ALLOW_CPU", "1")  # Unsloth's own switch for GPU-less hosts
    try:
        # First, before anything imports transformers or trl (resolving a GGUF alias below does): Unsloth patches
        # them at import time, and patches applied after they were imported are silently incomplete.
        import unsloth
    except Exception as exc:
        raise ProviderUnavailable(f"unsloth could not be imported: {_first_line(exc)}") from exc
    from forge_hf.provider import auto_dtype, resolve_model

    source, info = resolve_model(request.model)
    if request.seed is not None:  # LoRA weights are initialised in get_peft_model below
        from transformers import set_seed

        set_seed(request.seed)
    try:
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=source,
            max_seq_length=request.max_seq_length or 2048,
            dtype=None if request.dtype == "auto" else auto_dtype(request.dtype),
            load_in_4bit=request.quantization == "4bit",
            trust_remote_code=request.trust_remote_code,
        )
        lora_applied = False
        if request.lora is not None:
            targets = request.lora.get("target_modules", "all-linear")
            model = FastLanguageModel.get_peft_model(
                model,
                r=request.lora["r"],
                lora_alpha=request.lora["lora_alpha"],
                lora_dropout=request.lora["lora_dropout"],
                target_modules=ALL_LINEAR if targets == "all-linear" else list(targets),
                use_gradient_checkpointing="unsloth" if request.gradient_checkpointing else False,
                bias="none",
            )
            lora_applied = True
    except ProviderUnavailable:
        raise
    except Exception as exc:  # Unsloth refuses many setups (device, model type, versions): say which
        raise ProviderUnavailable(f"unsloth could not load {request.model}: {_first_line(exc)}") from exc
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
    info.update({
        "model_source": source,
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch."),
        "device": str(getattr(model, "device", "")),
        "quantization": "nf4-4bit" if request.quantization == "4bit" else None,
        "unsloth_version": getattr(unsloth, "__version__", "unknown"),
        "lora_by": "unsloth" if lora_applied else None,
    })
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, lora_applied=lora_applied)

