"""Run configuration: a YAML file, ``--set key=value`` overrides and CLI flags, validated by a recipe's pydantic model.

Every problem is reported at once, one line each, with where it came from (``config.yaml:7``, ``--set lr=x``)::

    config.yaml:4: learning_rat: unknown key (did you mean 'learning_rate'?)
    --set max_steps=ten: max_steps: Input should be a valid integer (got 'ten')

Relative paths in the YAML file are resolved against the file's folder, those from the command line against
the working directory.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from forge.errors import ConfigError

# Keys the run engine reads from a config file itself; everything else belongs to the recipe's config.
ENGINE_KEYS = ("recipe", "provider", "output_dir")
DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".arrow"}


class RecipeConfig(BaseModel):
    """Base for recipe configs: unknown keys are errors, and every run has a seed."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    seed: int = 42


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dirs", {}).get(info.field_name)
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    return path.resolve()


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


def _file_or_hub_name(value: str, info: ValidationInfo) -> str:
    path = _resolve(Path(value), info)
    if path.exists():
        return str(path)
    looks_local = Path(value).suffix.lower() in DATA_SUFFIXES or value.startswith((".", "/", "~"))
    if looks_local:
        raise ValueError(f"file not found: {path}")
    return value  # a dataset name on the Hugging Face Hub


DataFile = Annotated[Path, AfterValidator(_existing_file)]
"""A local file that must exist (relative to the config file's folder when given there)."""

DataSource = Annotated[str, AfterValidator(_file_or_hub_name)]
"""A local data file (must exist) or a Hugging Face Hub dataset name."""

OutputPath = Annotated[Path, AfterValidator(_resolve)]
"""A path that need not exist yet, resolved like :data:`DataFile`."""


@dataclass
class ConfigSource:
    """Raw config values and where each top-level key came from."""

    values: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    base_dirs: dict[str, Path] = field(default_factory=dict)
    file: Path | None = None

    def set(self, key: str, value: Any, where: str, base_dir: Path | None = None) -> None:
        target = self.values
        parts = key.split(".")
        for part in parts[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        target[parts[-1]] = value
        self.where[key] = where
        self.base_dirs[parts[0]] = base_dir or Path.cwd()

    def locate(self, loc: tuple[Any, ...]) -> str:
        """Best known origin for an error at pydantic location ``loc``."""
        for n in range(len(loc), 0, -1):
            key = ".".join(str(p) for p in loc[:n])
            if key in self.where:
                return self.where[key]
        return str(self.file) if self.file else "config"

    def pop_engine_keys(self) -> dict[str, Any]:
        return {k: self.values.pop(k) for k in ENGINE_KEYS if k in self.values}


MAX_CONFIG_BYTES = 1 << 20  # a run config is a few hundred bytes; 1 MiB leaves room for inline reward lists
MAX_CONFIG_NODES = 100_000  # nodes after alias expansion ("billion laughs" configs expand to 10^9)


def _check_expansion(path: Path, root: yaml.Node) -> None:
    """Refuse YAML whose aliases expand beyond :data:`MAX_CONFIG_NODES` nodes, counting in linear time (each node
    once, memoised) so the check itself cannot be made slow; a cycle of aliases counts as too large."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            return MAX_CONFIG_NODES + 1
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_CONFIG_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > MAX_CONFIG_NODES:
                    break
        visiting.discard(key)
        sizes[key] = total
        return total

    if size(root) > MAX_CONFIG_NODES:
        raise ConfigError(f"{path}: YAML aliases expand to more than {MAX_CONFIG_NODES:,} values; refusing "
                          "(an alias bomb, or a config far larger than any recipe needs)")


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    return lines


def load_config_file(path: Path, source: ConfigSource | None = None) -> ConfigSource:
    """Read a YAML config into ``source``, remembering the line of every key."""
    source = source or ConfigSource()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is {path.stat().st_size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_expansion(path, node)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of key: value, got {type(data).__name__}")
    lines = _key_lines(node) if node is not None else {}
    source.file = path
    base = path.resolve().parent
    for key, value in data.items():
        source.values[str(key)] = value
        source.base_dirs[str(key)] = base
    for key, line in lines.items():
        source.where[key] = f"{path}:{line}"
    return source


def apply_overrides(source: ConfigSource, overrides: list[str]) -> None:
    """Apply ``key=value`` overrides; values are parsed as YAML scalars (``3``, ``1e-4``, ``true``, ``[a, b]``)."""
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--set {item}: expected key=value")
            continue
        try:
            node = yaml.compose(raw, Loader=yaml.SafeLoader) if raw.strip() else None
            if node is not None:
                _check_expansion(Path(f"--set {key}"), node)
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        source.set(key, value, f"--set {item}")
    if problems:
        raise ConfigError(problems[0], problems)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    return list(getattr(current, "model_fields", {}))


def _describe(model: type[BaseModel], error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        names = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
        return f"{dotted}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{dotted}: missing required field"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if isinstance(given, (str, int, float, bool)) and "file not found" not in message:
        return f"{dotted}: {message} (got {given!r})"
    return f"{dotted}: {message}"


def validate(model: type[BaseModel], source: ConfigSource) -> BaseModel:
    """Validate ``source`` against ``model``; raise :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(source.values, context={"base_dirs": source.base_dirs})
    except ValidationError as exc:
        problems = [f"{source.locate(tuple(e['loc']))}: {_describe(model, e)}" for e in exc.errors()]
        raise ConfigError(problems[0], problems) from None


def dump(config: BaseModel) -> str:
    """The resolved config as YAML (what a run directory stores and ``--dry-run`` prints)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type: ``int | None``, ``'bfd' | 'wrapped'``, ``list[str]``."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def describe_fields(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) for each field of a recipe config (docs/recipes.md is checked by it)."""
    rows = []
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        rows.append((name, type_name(info.annotation), default, info.description or ""))
    return rows
