"""``forge env``: versions and accelerators, for bug reports."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

import typer

import forge
from forge.plugins import get_plugins

LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "mlflow", "onnxruntime",
             "unsloth", "bitsandbytes", "fastapi", "uvicorn", "pydantic", "pluggy", "typer")


def collect() -> dict[str, object]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    accel: dict[str, object] = {"cuda": False, "mps": False}
    if versions["torch"]:
        import torch

        accel["cuda"] = torch.cuda.is_available()
        if accel["cuda"]:
            accel["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            accel["cuda_version"] = torch.version.cuda
            accel["bf16"] = torch.cuda.is_bf16_supported()
        accel["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        accel["cpu_threads"] = torch.get_num_threads()
    plugins = get_plugins()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "forge": forge.__version__,
        "plugins": {p.name: (p.version if not p.error else f"{p.version} (error: {p.error})") for p in plugins.plugins},
        "libraries": versions,
        "accelerators": accel,
    }


def env(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Print versions of python, forge, plugins and libraries, and CUDA/MPS availability."""
    info = collect()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"python        {info['python']} ({info['platform']})")
    typer.echo(f"forge         {info['forge']}")
    for name, version in info["plugins"].items():  # type: ignore[attr-defined]
        typer.echo(f"  {name:<12}{version}")
    for name, version in info["libraries"].items():  # type: ignore[attr-defined]
        typer.echo(f"{name:<14}{version or 'not installed'}")
    for name, value in info["accelerators"].items():  # type: ignore[attr-defined]
        typer.echo(f"{name:<14}{value}")
