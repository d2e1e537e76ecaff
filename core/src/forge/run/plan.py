"""Planning a run: resolve the recipe, validate the config, choose the provider and the run directory.

Pure: it writes nothing and imports nothing heavy. ``forge run --dry-run`` stops here, and ``launch.py`` plans
before it starts the ranks of a multi-process run, so every config error is reported once, before any process
starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forge import config as cfg
from forge.artifacts import MANIFEST, read_manifest
from forge.contributions import Registered
from forge.errors import ConfigError, ForgeError
from forge.eval_engine import check_suites
from forge.plugins import PluginSet
from forge.providers import AUTO, ProviderChoice

RUNS_DIR = Path("runs")


@dataclass
class RunOptions:
    """Everything ``forge run`` was asked to do."""

    recipe: str | None = None
    config_file: Path | None = None
    model: str | None = None
    data: str | None = None
    output_dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    provider: str | None = None
    dry_run: bool = False
    resume: Path | None = None
    tracking: bool = True


@dataclass
class Plan:
    """A validated run, before anything is written."""

    recipe: Registered
    config: Any  # the recipe's validated pydantic config
    provider: ProviderChoice | None  # None for recipes that load no model through a provider
    run_dir: Path
    resuming: bool = False

    def config_yaml(self) -> str:
        """What ``config.yaml`` holds: the engine keys (recipe, requested provider), then the resolved config."""
        return _header(self, provider=self.provider.requested if self.provider else None)

    def describe(self) -> str:
        """What ``--dry-run`` prints: the recipe, the provider that would run, the run directory, the config."""
        return _header(self, provider=self.provider.chosen.qualified if self.provider else None,
                       output_dir=str(self.run_dir))


def _header(plan: Plan, **engine: str | None) -> str:
    header = {"recipe": plan.recipe.qualified, **{k: v for k, v in engine.items() if v is not None}}
    return yaml.safe_dump(header, sort_keys=False) + cfg.dump(plan.config)


def plan_run(options: RunOptions, plugins: PluginSet, follower: bool = False) -> Plan:
    """Resolve and validate everything for a new run or a resumed one.

    ``follower`` is true on ranks > 0 of a multi-process run: rank 0 owns (and may already have created) the run
    directory, so its state is not checked here.
    """
    if options.resume is not None:
        return _plan_resume(options, plugins, follower)
    source = cfg.ConfigSource()
    if options.config_file is not None:
        cfg.load_config_file(options.config_file, source)
    engine = source.pop_engine_keys()
    recipe_name = options.recipe or engine.get("recipe")
    if not recipe_name:
        raise ConfigError("no recipe: pass --recipe NAME or put 'recipe: NAME' in the config file; "
                          "forge list-plugins --kind recipes lists them")
    recipe = plugins.get("recipes", str(recipe_name))
    if options.model is not None:
        source.set("model", options.model, "--model")
    if options.data is not None:
        source.set("data", options.data, "--data")
    cfg.apply_overrides(source, options.overrides)
    model = recipe.item.config_model()
    for flag, key in (("--model", "model"), ("--data", "data")):
        if key in source.values and key not in model.model_fields and source.where.get(key) == flag:
            raise ConfigError(f"{flag}: recipe {recipe.name} takes no '{key}' (its fields: "
                              f"{', '.join(model.model_fields)})")
    config = cfg.validate(model, source)
    check_suites(config, plugins, source.locate(("eval_suites",)))
    provider = choose_provider(recipe, options.provider or engine.get("provider"), plugins)
    output = options.output_dir or (Path(engine["output_dir"]) if engine.get("output_dir") else None)
    run_dir = output if output is not None else _default_run_dir(recipe.name)
    if not options.dry_run and not follower:
        _check_new_run_dir(run_dir)
    return Plan(recipe, config, provider, run_dir)


def _plan_resume(options: RunOptions, plugins: PluginSet, follower: bool) -> Plan:
    if options.overrides or options.config_file or options.model or options.data or options.output_dir:
        raise ConfigError("--resume continues a run with its own config; drop --config/--set/--model/--data/"
                          "--output-dir")
    run_dir = _find_resumable(options.resume)
    manifest = read_manifest(run_dir)
    if manifest.get("type") != "run":
        raise ForgeError(f"--resume {run_dir}: not a run directory")
    if manifest.get("status") == "completed" and not follower:
        raise ForgeError(f"--resume {run_dir}: run already completed")
    recipe = plugins.get("recipes", manifest["recipe"])
    if options.recipe and plugins.get("recipes", options.recipe).qualified != recipe.qualified:
        raise ConfigError(f"--recipe {options.recipe}: run {run_dir} was made by {recipe.qualified}")
    source = cfg.load_config_file(run_dir / "config.yaml")
    engine = source.pop_engine_keys()
    config = cfg.validate(recipe.item.config_model(), source)
    check_suites(config, plugins, source.locate(("eval_suites",)))
    provider = choose_provider(recipe, options.provider or engine.get("provider"), plugins)
    return Plan(recipe, config, provider, run_dir, resuming=True)


def choose_provider(recipe: Registered, requested: str | None, plugins: PluginSet) -> ProviderChoice | None:
    """The provider of a recipe that loads models through one (``uses_provider``); ``None`` for the others."""
    if not recipe.item.uses_provider:
        if requested and requested != AUTO:
            raise ConfigError(f"--provider: recipe {recipe.name} does not load models through a provider")
        return None
    return ProviderChoice.select(plugins.all("providers"), requested or AUTO,
                                 find=lambda name: plugins.get("providers", name))


def _default_run_dir(recipe: str) -> Path:
    from forge.artifacts import fresh_directory

    return fresh_directory(RUNS_DIR, recipe)


def _check_new_run_dir(path: Path) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise ForgeError(f"--output-dir {path}: exists and is not a directory")
    if (path / MANIFEST).exists():
        manifest = read_manifest(path)
        status = manifest.get("status", "unknown")
        if manifest.get("type") == "run" and status != "completed":
            raise ForgeError(f"--output-dir {path}: holds an unfinished run ({status}); continue it with "
                             f"forge run --resume {path}, or choose another --output-dir")
        raise ForgeError(f"--output-dir {path}: holds a completed forge run; choose another --output-dir")
    if any(path.iterdir()):
        raise ForgeError(f"--output-dir {path}: exists, is not empty and is not a forge run")


def _find_resumable(path: Path | None) -> Path:
    if path is not None and str(path) != "latest":
        return path
    candidates = sorted(
        (p for p in RUNS_DIR.glob("*") if (p / MANIFEST).is_file()), key=lambda p: (p / MANIFEST).stat().st_mtime
    )
    for candidate in reversed(candidates):
        if read_manifest(candidate).get("status") != "completed":
            return candidate
    raise ForgeError(f"--resume: no unfinished run under {RUNS_DIR}/; name the run directory")
