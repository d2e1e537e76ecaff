"""Keep the reference tables in docs/ true: every recipe field table in docs/recipes.md (and every exporter option
table in docs/export.md) is generated from its pydantic model.

    python docs/reference.py           rewrite the tables in place (make docs)
    python docs/reference.py --check   exit 1 and name the stale tables (tests/core/test_docs.py runs this)

A table is a marked region; ``minus`` leaves out the fields a model shares unchanged with the models named after it
(same type, default and description), so a recipe's section lists only what it adds or changes::

    <!-- fields: forge_hf.recipes.sft:SFTRecipeConfig minus forge_hf.recipes.common:TrainingFields -->
    | field | type | default | meaning |
    ...
    <!-- /fields -->
"""

from __future__ import annotations

import importlib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
MARKED = re.compile(r"(<!-- fields: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /fields -->)", re.S)
LONG = 12  # a Literal with more names than this is summarised (the error for a wrong value lists them all)
CHOICES = "`plugins/forge-hf/src/forge_hf/recipes/choices.py`"
BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "min length", "max_length": "max length"}


def load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def type_name(annotation: Any) -> str:
    """A short spelling of a field's type: ``int | None``, ``'bfd' | 'wrapped'``, ``list[str]``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal and len(args) > LONG:
        return f"{len(args)} names: {', '.join(repr(a) for a in args[:3])}… (all in {CHOICES})"
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def bounds(info: Any) -> str:
    parts = []
    for item in info.metadata:
        for attribute, sign in BOUNDS.items():
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def shown_default(info: Any) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, str) and "/src/" in value and Path(value).is_absolute():
        return f"packaged `{value.split('/src/', 1)[1]}`"  # a file inside the plugin: not this machine's path
    return repr(value)


def row(name: str, info: Any) -> str:
    default = shown_default(info)
    meaning = (info.description or "").replace("|", "\\|").replace("\n", " ")
    default = default.replace("|", "\\|")
    return f"| `{name}` | {type_name(info.annotation)}{bounds(info)} | {default} | {meaning} |"


def table(spec: str) -> str:
    head, _, minus = spec.partition(" minus ")
    model = load(head.strip())
    shared: dict[str, str] = {}
    for ref in minus.split():
        for name, info in load(ref).model_fields.items():
            shared.setdefault(name, row(name, info))
    rows = [row(name, info) for name, info in model.model_fields.items() if shared.get(name) != row(name, info)]
    return "| field | type | default | meaning |\n|---|---|---|---|\n" + "".join(r + "\n" for r in rows)


def render(text: str) -> str:
    return MARKED.sub(lambda m: m.group(1) + table(m.group("spec")) + m.group(4), text)


def stale(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [m.group("spec") for m in MARKED.finditer(text) if m.group("body") != table(m.group("spec"))]


def main(argv: list[str]) -> int:
    files = [DOCS / "recipes.md", DOCS / "export.md"]
    if "--check" in argv:
        problems = [f"{path.name}: table '{spec}' is out of date" for path in files for spec in stale(path)]
        for problem in problems:
            print(problem + " (run: make docs)", file=sys.stderr)
        return 1 if problems else 0
    for path in files:
        path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
