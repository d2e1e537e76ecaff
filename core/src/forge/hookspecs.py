"""The hooks a forge plugin can implement. This module is the reference for plugin authors.

Every hook receives ``register``, a callable that takes one contribution object. The core owns naming,
duplicate detection and lookup; a plugin only says what it offers. Hooks may accept fewer arguments than the
spec lists (new arguments are added over time and implementations opt into them).
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("forge")


class Register(Protocol):
    """What every hook receives: call it once per contribution. ``name`` is used by ``register_commands`` only."""

    def __call__(self, item: Any, name: str | None = None) -> None: ...


@hookspec
def register_providers(register: Register) -> None:
    """Register model providers: ``register(forge.Provider(name=..., load=..., available=...))``.

    :param register: call once per :class:`forge.Provider`; a provider loads a model and its tokenizer.
    """


@hookspec
def register_recipes(register: Register) -> None:
    """Register training recipes: ``register(forge.Recipe(name=..., config=..., train=...))``.

    :param register: call once per :class:`forge.Recipe`; ``forge run --recipe NAME`` runs it.
    """


@hookspec
def register_templates(register: Register) -> None:
    """Register project templates: ``register(forge.Template(name=..., files=...))``.

    :param register: call once per :class:`forge.Template`; ``forge init NAME DIR`` writes its files.
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register exporters: ``register(forge.Exporter(name=..., accepts=(...), export=...))``.

    :param register: call once per :class:`forge.Exporter`; ``forge export ARTIFACT --format NAME`` runs it.
    """


@hookspec
def register_servers(register: Register) -> None:
    """Register inference servers: ``register(forge.Server(name=..., accepts=(...), create_app=...))``.

    :param register: call once per :class:`forge.Server`; ``forge serve ARTIFACT`` picks one by artifact kind.
    """


@hookspec
def register_evaluators(register: Register) -> None:
    """Register evaluation suites: ``register(forge.Evaluator(name=..., accepts=(...), evaluate=...))``.

    :param register: call once per :class:`forge.Evaluator`; ``forge eval ARTIFACT --suite NAME`` runs it.
    """


@hookspec
def register_commands(register: Register) -> None:
    """Register extra CLI commands: ``register(function, name="my-command")``.

    :param register: call with a plain function whose parameters are typer arguments/options.
    """
