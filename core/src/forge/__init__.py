"""forge: from a base model and a dataset to a fine-tuned, exported, served model.

Plugins implement the hooks in :mod:`forge.hookspecs`, mark them with :data:`hookimpl`, and import what they need
from this one namespace::

    import forge

    class HelloConfig(forge.RecipeConfig):
        data: forge.DataFile

    def train(ctx: forge.RunContext, config: HelloConfig) -> forge.ArtifactResult: ...

    @forge.hookimpl
    def register_recipes(register: forge.Register) -> None:
        register(forge.Recipe(name="hello", config=HelloConfig, train=train))

Names are resolved lazily (module ``__getattr__``), so ``import forge`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("forge")

# public name -> module that defines it
_EXPORTS = {
    "Provider": "forge.contributions",
    "Recipe": "forge.contributions",
    "Template": "forge.contributions",
    "Exporter": "forge.contributions",
    "Server": "forge.contributions",
    "Evaluator": "forge.contributions",
    "Command": "forge.contributions",
    "Register": "forge.hookspecs",
    "RecipeConfig": "forge.config",
    "DataFile": "forge.config",
    "DataSource": "forge.config",
    "OutputPath": "forge.config",
    "Seed": "forge.config",
    "NanPolicy": "forge.config",
    "Artifact": "forge.artifacts",
    "ArtifactResult": "forge.artifacts",
    "RunContext": "forge.run.context",
    "ModelRequest": "forge.models",
    "LoadedModel": "forge.models",
    "ProviderUnavailable": "forge.models",
    "EvalRequest": "forge.evaluation",
    "EvalResult": "forge.evaluation",
    "Predictor": "forge.predictors",
    "load_predictor": "forge.predictors",
    "ServeSettings": "forge.serving.settings",
    "create_base_app": "forge.serving.app",
    "MicroBatcher": "forge.serving.batching",
    "ForgeError": "forge.errors",
    "ConfigError": "forge.errors",
    "DataError": "forge.errors",
    "PluginError": "forge.errors",
    "NotFoundError": "forge.errors",
    "TrainingDiverged": "forge.errors",
}

__all__ = [
    "Artifact",
    "ArtifactResult",
    "Command",
    "ConfigError",
    "DataError",
    "DataFile",
    "DataSource",
    "EvalRequest",
    "EvalResult",
    "Evaluator",
    "Exporter",
    "ForgeError",
    "LoadedModel",
    "MicroBatcher",
    "ModelRequest",
    "NanPolicy",
    "NotFoundError",
    "OutputPath",
    "PluginError",
    "Predictor",
    "Provider",
    "ProviderUnavailable",
    "Recipe",
    "RecipeConfig",
    "Register",
    "RunContext",
    "Seed",
    "ServeSettings",
    "Server",
    "Template",
    "TrainingDiverged",
    "__version__",
    "create_base_app",
    "hookimpl",
    "load_predictor",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from forge.artifacts import Artifact, ArtifactResult
    from forge.config import DataFile, DataSource, NanPolicy, OutputPath, RecipeConfig, Seed
    from forge.contributions import Command, Evaluator, Exporter, Provider, Recipe, Server, Template
    from forge.errors import ConfigError, DataError, ForgeError, NotFoundError, PluginError, TrainingDiverged
    from forge.evaluation import EvalRequest, EvalResult
    from forge.hookspecs import Register
    from forge.models import LoadedModel, ModelRequest, ProviderUnavailable
    from forge.predictors import Predictor, load_predictor
    from forge.run.context import RunContext
    from forge.serving.app import create_base_app
    from forge.serving.batching import MicroBatcher
    from forge.serving.settings import ServeSettings
