"""forge: from a base model and a dataset to a fine-tuned, exported, served model.

Plugins implement the hooks in :mod:`forge.hookspecs` and mark them with :data:`hookimpl`::

    import forge

    @forge.hookimpl
    def register_recipes(register):
        register(forge.Recipe(name="hello", config=HelloConfig, train=train))
"""

from __future__ import annotations

import pluggy

from forge.contributions import Exporter, Provider, Recipe, Server, Template
from forge.errors import ForgeError

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("forge")

__all__ = [
    "Exporter",
    "ForgeError",
    "Provider",
    "Recipe",
    "Server",
    "Template",
    "__version__",
    "hookimpl",
]
