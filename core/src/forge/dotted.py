"""``"package.module:attribute"`` references: how plugins name callables without importing their modules."""

from __future__ import annotations

import importlib
from typing import Any

Ref = Any  # a callable/class, or "module:attribute"


def resolve(ref: Ref) -> Any:
    """Return the object named by ``ref`` (``"pkg.module:attr"``), or ``ref`` itself when it is an object."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attribute = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else []:
        obj = getattr(obj, part)
    return obj
