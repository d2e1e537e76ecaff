"""Can Unsloth run here? Answered from package metadata and the device nodes, importing neither unsloth nor torch."""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path

TRY_CPU_ENV = "FORGE_UNSLOTH_TRY_CPU"
GPU_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")  # NVIDIA driver, AMD ROCm


def unavailable_reason() -> str | None:
    """Why the unsloth provider cannot run on this machine, or None when it can."""
    if importlib.util.find_spec("unsloth") is None:
        return "the unsloth package is not installed (pip install unsloth, on a GPU machine: docs/unsloth.md)"
    if os.environ.get(TRY_CPU_ENV) == "1":
        return None  # let Unsloth try (and say for itself what fails)
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "torch is not installed"
    if torch_version.endswith("+cpu"):
        return f"torch {torch_version} is a CPU-only build and Unsloth loads models on a GPU only"
    if not any(Path(marker).exists() for marker in GPU_MARKERS):
        return "no GPU found (Unsloth loads models on NVIDIA, AMD or Intel GPUs only)"
    return None
