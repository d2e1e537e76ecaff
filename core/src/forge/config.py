"""Run configuration: a YAML file, ``--set key=value`` overrides and CLI flags, validated by a recipe's pydantic model.

Every problem is reported at once, one line each, with where it came from (``config.yaml:7``, ``--set lr=x``)::

    config.yaml:4: learning_rat: unknown key (did you mean 'learning_rate'?)
    --set max_steps=ten: max_steps: Input should be a valid integer (got 'ten')

Relative paths in the YAML file are resolved against the file's folder, those from the command line against
the working directory.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from forge.errors import ConfigError

# Keys the run engine reads from a config file itself; everything else belongs to the recipe's config.
ENGINE_KEYS = ("recipe", "provider", "output_dir")
DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".arrow"}


SEED_MAX = 2**32 - 1  # numpy's and transformers' set_seed limit

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A random seed: 0 .. 2**32 - 1 (what numpy, torch and transformers all accept)."""

NanPolicy = typing.Literal["stop", "continue"]
"""What a run does when its training loss becomes NaN or infinite: ``stop`` (the run fails at that step, its last good
checkpoint kept) or ``continue``."""


def _takes(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field's type accepts a value of one of ``kinds`` as such (``bool``, or ``int``/``float``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _takes(args[0], kinds)
    if origin in (typing.Union, types.UnionType):
        return any(_takes(a, kinds) for a in args)
    if origin is typing.Literal:
        return any(isinstance(a, kinds) for a in args)
    if annotation is Any:
        return True
    return isinstance(annotation, type) and issubclass(annotation, kinds)


class FieldRules(BaseModel):
    """Validation rules shared by every forge config model (recipes, exporter options, server flags): unknown keys
    are errors, numbers are finite, and ``true``/``false`` is not a number (pydantic would read it as 1/0)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if not _takes(annotation, (bool,)) and _takes(annotation, (int, float)):
                raise ValueError("expected a number, not true/false")
        return value


class EvalSuite(BaseModel):
    """One entry of ``eval_suites``: a suite run on the finished artifact (``forge eval ARTIFACT --suite ...``)."""

    model_config = ConfigDict(extra="forbid")

    suite: str = Field(description="evaluation suite (forge list-plugins --kind evaluators)")
    data: Path | None = Field(None, description="data file (relative to the config file)")
    options: dict[str, Any] = Field(default_factory=dict, description="suite options (like forge eval --set)")
    gates: list[str] = Field(default_factory=list, description="gates, e.g. 'accuracy>=0.85'; a failed one exits 3")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"suite": value} if isinstance(value, str) else value

    @field_validator("data")
    @classmethod
    def _data(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dirs", {}).get("eval_suites")
        path = Path(value).expanduser()
        path = (path if path.is_absolute() else Path(base or Path.cwd()) / path).resolve()
        if not path.exists():
            raise ValueError(f"file not found: {path}")
        return path

    @field_validator("gates")
    @classmethod
    def _gates(cls, value: list[str]) -> list[str]:
        from forge.gates import parse_gate

        for expr in value:
            try:
                gate = parse_gate(expr)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("--gate ")) from None
            if gate.needs_baseline:
                raise ValueError(f"gate {expr!r}: eval_suites have no baseline; use a number")
        return value


class RecipeConfig(FieldRules):
    """Base for recipe configs: unknown keys are errors, numbers must be finite, every run has a seed, and may
    evaluate its artifact at the end (``eval_suites``)."""

    seed: Seed = Field(42, description="random seed (0 .. 2**32 - 1)")
    eval_suites: list[EvalSuite] = Field(
        default_factory=list,
        description="evaluate the artifact when the run completes: suite names, or {suite, data, options, gates} "
                    "(docs/evaluation.md); a failed gate exits 3, the run stays completed")


def _resolve(value: Path, info: ValidationInfo) -> Path:
    context = info.context or {}
    base = context.get("base_dirs", {}).get(info.field_name)
    if base is None and info.field_name == "path":  # a data source in a list: relative to the config file
        base = context.get("config_dir")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13, OSError after)
        raise ValueError(f"{path}: symlink loop") from None


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


def _file_or_hub_name(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must name a data file or a Hub dataset, got an empty string")
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



class DataSpec(FieldRules):
    """One source of a data mixture (``data:`` as a list): a file or Hub dataset, how much of it, in which format."""

    path: DataSource = Field(description="data file or Hub dataset name")
    split: str = Field("train", min_length=1, description="Hub dataset split")
    subset: str | None = Field(None, min_length=1, description="Hub dataset configuration (subset)")
    weight: float | None = Field(None, ge=0, description="share of the mixture among the weighted sources "
                                                         "(normalized; their total size is the sum of their records)")
    samples: int | None = Field(None, ge=1, description="exactly this many records (sampled, repeated if needed)")
    format: str = Field("auto", description="this source's format (auto: detected)")

    @model_validator(mode="after")
    def _weight_or_samples(self) -> DataSpec:
        if self.weight is not None and self.samples is not None:
            raise ValueError("weight: give weight or samples, not both")
        return self


def _mixture(value: Any) -> Any:
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list of data sources")
        weights = [s.weight for s in value if s.weight is not None]
        if weights and sum(weights) <= 0:
            raise ValueError("the weights of the data sources sum to zero")
    return value


DataSources = Annotated[
    Annotated[DataSource, Tag("source")] | Annotated[list[DataSpec], Tag("mixture")],
    Discriminator(lambda v: "mixture" if isinstance(v, (list, tuple)) else "source"),
    AfterValidator(_mixture),
]
"""One data source, or a mixture: a list of :class:`DataSpec`."""

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


# pydantic error types that only say "the input is not of this member's type": in a union, the other members'
# errors say more.
_MISMATCH = ("literal_error", "is_instance_of", "none_required", "model_type", "dataclass_type")


def _is_mismatch(error: Mapping[str, Any]) -> bool:
    kind = str(error["type"])
    return kind in _MISMATCH or kind.endswith(("_type", "_parsing"))


def _field_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without pydantic's union-member tags (``list[str]``, ``literal['all-linear']``...): the field's path."""
    out: list[Any] = []
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if isinstance(part, int) or (fields and part in fields):
            out.append(part)
            current = fields[part].annotation if fields and part in fields else None
        elif fields is None and not out:
            out.append(part)
    return tuple(out) if out else loc


def _one_per_field(model: type[BaseModel], errors: Sequence[Mapping[str, Any]]) -> list[tuple[tuple[Any, ...], Any]]:
    """One error per field: a value that fits no member of a union gives an error per member; keep the one that
    says why the value is wrong (a list too short) over those that only say it is another type, and when every
    member merely has another type, say which types the field takes."""
    grouped: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for error in errors:
        grouped.setdefault(_field_loc(model, tuple(error["loc"])), []).append(error)
    picked: list[tuple[tuple[Any, ...], Any]] = []
    for loc, group in grouped.items():
        if len(group) == 1:
            picked.append((loc, group[0]))
            continue
        telling = [e for e in group if not _is_mismatch(e)]
        if telling:
            picked.append((loc, telling[0]))
            continue
        annotation = _annotation_at(model, loc)
        expected = type_name(annotation) if annotation is not None else " or ".join(str(e["msg"]) for e in group)
        picked.append((loc, {"type": "union", "loc": loc, "msg": f"expected {expected}",
                             "input": group[0].get("input")}))
    return picked


def _annotation_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    current: Any = model
    annotation = None
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = current = fields[part].annotation
    return annotation


def _describe(model: type[BaseModel], error: Mapping[str, Any], loc: tuple[Any, ...] | None = None) -> str:
    loc = tuple(error["loc"]) if loc is None else loc
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
    shown = f"{dotted}: {message}" if dotted else message
    if isinstance(given, (str, int, float, bool)) and "file not found" not in message:
        return f"{shown} (got {given!r})"
    return shown


def _whole_model_error(model: type[BaseModel], error: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A model validator's error names its field first (``"primary: not in models"``): report it at that field."""
    message = str(error["msg"]).removeprefix("Value error, ")
    name = message.split(":", 1)[0]
    return (name,) if ":" in message and name in model.model_fields else None


def validate(model: type[BaseModel], source: ConfigSource) -> BaseModel:
    """Validate ``source`` against ``model``; raise :class:`ConfigError` listing every problem, one per field."""
    try:
        config_dir = source.file.parent if source.file is not None else None
        return model.model_validate(source.values, context={"base_dirs": source.base_dirs, "config_dir": config_dir})
    except ValidationError as exc:
        problems = []
        for loc, error in _one_per_field(model, exc.errors()):
            named = _whole_model_error(model, error) if not loc else None
            if named is not None:
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{source.locate(named)}: {message}")
            else:
                problems.append(f"{source.locate(loc)}: {_describe(model, error, loc)}")
        raise ConfigError(problems[0], problems) from None


def dump(config: BaseModel) -> str:
    """The resolved config as YAML (what a run directory stores and ``--dry-run`` prints)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type: ``int | None``, ``'bfd' | 'wrapped'``, ``list[str]``."""
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
