"""What a plugin contributes. Each is a small frozen dataclass handed to a ``register`` callable.

Callables and classes may be given directly or as ``"package.module:attribute"`` strings; strings keep the
plugin's entry module light (heavy modules are imported only when the contribution is used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge.dotted import Ref, resolve

if TYPE_CHECKING:
    from pydantic import BaseModel

    from forge.artifacts import Artifact
    from forge.evaluation import EvalRequest, EvalResult

@dataclass(frozen=True)
class Provider:
    """Loads a model and its tokenizer.

    ``load(request: ModelRequest) -> LoadedModel``. ``available() -> str | None`` returns why the provider
    cannot run here (``None`` when it can) and must be cheap: it runs before anything heavy is imported.
    Among available providers the one with the highest ``priority`` is "best". ``tasks`` lists the
    :attr:`ModelRequest.task` values it serves (empty: any); forge does not offer it other tasks.
    """

    name: str
    load: Ref
    summary: str = ""
    available: Ref | None = None
    priority: int = 0
    tasks: tuple[str, ...] = ()

    kind = "providers"

    def unavailable_reason(self) -> str | None:
        return resolve(self.available)() if self.available is not None else None


@dataclass(frozen=True)
class Recipe:
    """A training procedure.

    ``config`` is a pydantic model (subclass :class:`forge.config.RecipeConfig`) validated before anything
    heavy is imported. ``train(ctx: RunContext, config) -> ArtifactResult`` writes the artifact into
    ``ctx.artifact_dir``. ``uses_provider`` says whether ``--provider`` means anything to it. ``check(config, log)``,
    when given, reads and checks the recipe's data exactly as ``train`` will (raising the same errors) without
    loading a model: ``forge run --dry-run`` calls it; ``log(line)`` prints a line.
    """

    name: str
    config: Ref
    train: Ref
    summary: str = ""
    uses_provider: bool = False
    check: Ref | None = None

    kind = "recipes"

    def config_model(self) -> type[BaseModel]:
        config: type[BaseModel] = resolve(self.config)
        return config

    def run(self, ctx: Any, config: BaseModel) -> Any:
        """``ctx`` is the run's :class:`forge.RunContext` (not imported here: the run modules import this one)."""
        return resolve(self.train)(ctx, config)

    def check_data(self, config: BaseModel, log: Callable[[str], None]) -> bool:
        """Run ``check`` (what ``--dry-run`` does with the data); False when the recipe has none."""
        if self.check is None:
            return False
        resolve(self.check)(config, log)
        return True


@dataclass(frozen=True)
class Template:
    """A project scaffold for ``forge init NAME DIR``.

    ``files(project_name: str) -> Mapping[str, str | bytes]`` maps relative paths to contents; the core
    writes them (all or nothing).
    """

    name: str
    files: Ref
    summary: str = ""

    kind = "templates"

    def render(self, project_name: str) -> Mapping[str, str | bytes]:
        files: Mapping[str, str | bytes] = resolve(self.files)(project_name)
        return files


@dataclass(frozen=True)
class Exporter:
    """Turns an artifact into another.

    ``export(artifact: Artifact, output_dir: Path, options: dict) -> ArtifactResult``;

    ``accepts`` lists the artifact kinds it can read. ``options``, when given, is a pydantic model (subclass
    :class:`forge.config.FieldRules`) of its ``--set``/``--quantize`` options: ``forge export`` validates them before
    the exporter runs (every problem at once, one line each) and passes the ones given, validated.
    """

    name: str
    accepts: tuple[str, ...]
    export: Ref
    summary: str = ""
    options: Ref | None = None

    kind = "exporters"

    def options_model(self) -> type[BaseModel] | None:
        model: type[BaseModel] | None = resolve(self.options) if self.options is not None else None
        return model

    def run(self, artifact: Artifact, output_dir: Path, options: dict[str, Any]) -> Any:
        return resolve(self.export)(artifact, output_dir, options)


@dataclass(frozen=True)
class Server:
    """Serves an artifact: ``create_app(artifact: Artifact, settings: ServeSettings) -> ASGI app``.

    ``accepts`` lists the artifact kinds it can serve. ``predict`` (optional): ``predict(artifact: Artifact,
    options: dict) -> forge.Predictor``, the same model in-process (see :mod:`forge.predictors`).

    ``engine``: ``"forge"`` (default) for an app forge runs itself; another name for a server that runs an outside
    engine (``forge serve ARTIFACT --engine NAME``): it gives ``launch(artifact, settings, given) -> int`` instead
    of ``create_app``, which runs the engine in the foreground and returns its exit code; ``given`` holds the
    ``forge serve`` flags the user set (``"--max-queue"``...), so it can refuse those it has no equivalent for.
    """

    name: str
    accepts: tuple[str, ...]
    create_app: Ref | None = None
    summary: str = ""
    predict: Ref | None = None
    engine: str = "forge"
    launch: Ref | None = None

    kind = "servers"

    def __post_init__(self) -> None:
        if self.engine == "forge" and self.create_app is None:
            raise ValueError(f"server {self.name!r}: create_app is required (engine 'forge')")
        if self.engine != "forge" and self.launch is None:
            raise ValueError(f"server {self.name!r}: engine {self.engine!r} needs launch=")

    def build(self, artifact: Artifact, settings: Any) -> Any:
        if self.create_app is None:
            raise ValueError(f"server {self.name!r} runs on engine {self.engine!r}; it has no app to build")
        return resolve(self.create_app)(artifact, settings)

    def run_engine(self, artifact: Artifact, settings: Any, given: frozenset[str]) -> int:
        """Run the outside engine in the foreground (see the class docstring); its exit code."""
        if self.launch is None:
            raise ValueError(f"server {self.name!r} runs in forge; it has nothing to launch")
        code: int = resolve(self.launch)(artifact, settings, given)
        return code

    def load_predictor(self, artifact: Artifact, options: dict[str, Any]) -> Any:
        """The artifact loaded in-process (``predict(artifact, options) -> forge.Predictor``)."""
        if self.predict is None:
            raise ValueError(f"server {self.name!r} has no predictor")
        return resolve(self.predict)(artifact, options)


@dataclass(frozen=True)
class Evaluator:
    """An evaluation suite: ``evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult``.

    ``accepts`` lists the artifact kinds it can evaluate; ``forge eval ARTIFACT --suite NAME`` runs it.
    See :mod:`forge.evaluation` for the request and result types.
    """

    name: str
    accepts: tuple[str, ...]
    evaluate: Ref
    summary: str = ""

    kind = "evaluators"

    def run(self, artifact: Artifact, request: EvalRequest) -> EvalResult:
        result: EvalResult = resolve(self.evaluate)(artifact, request)
        return result


@dataclass(frozen=True)
class Command:
    """An extra CLI command contributed by a plugin."""

    name: str
    function: Callable[..., Any]
    summary: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    kind = "commands"


@dataclass(frozen=True)
class Registered:
    """A contribution and the plugin it came from."""

    plugin: str
    item: Any

    @property
    def name(self) -> str:
        return str(self.item.name)

    @property
    def qualified(self) -> str:
        return f"{self.plugin}:{self.item.name}"


CONTRIBUTION_TYPES: tuple[type, ...] = (Provider, Recipe, Template, Exporter, Server, Evaluator, Command)
KINDS: dict[str, type] = {t.kind: t for t in CONTRIBUTION_TYPES}  # type: ignore[attr-defined]
"""Contribution kinds by their plural name (``recipes``), each served by the hook ``register_<kind>``."""


def singular(kind: str) -> str:
    """``recipes`` -> ``recipe``: how a message names one contribution of ``kind``."""
    return KINDS[kind].__name__.lower()
