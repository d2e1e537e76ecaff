"""Plugin manager: discovers plugins (entry-point group ``forge``), collects their contributions, resolves names.

Each plugin is loaded and asked for its contributions inside its own guard: a plugin that fails to import or
raises in a hook is recorded with its error and contributes nothing; the others work. Environment:

- ``FORGE_PLUGINS=forge-hf,forge-onnx`` loads only the named plugins (entry-point or distribution names);
  the core's built-in plugins always load.
- ``FORGE_STRICT=1`` re-raises plugin errors with their traceback (for plugin development and CI).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from forge import hookspecs
from forge.contributions import KINDS, Command, Registered, singular
from forge.errors import NotFoundError, PluginError

ENTRY_POINT_GROUP = "forge"
ONLY_ENV = "FORGE_PLUGINS"
STRICT_ENV = "FORGE_STRICT"
CORE = "forge-core"
BUILTIN_MODULES = ("forge.default_plugins.templates",)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_HOOK_BY_KIND = {kind: f"register_{kind}" for kind in KINDS}


@dataclass
class PluginInfo:
    """One installed plugin: its distribution, version, what it contributes, or why it failed."""

    name: str
    version: str
    module: str
    error: str | None = None
    contributions: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "error": self.error,
            "contributions": self.contributions,
        }


class PluginSet:
    """Every loaded plugin and its contributions, with name lookup."""

    def __init__(self, plugins: list[PluginInfo], items: dict[str, list[Registered]]) -> None:
        self.plugins = plugins
        self._items = items

    def all(self, kind: str) -> list[Registered]:
        return list(self._items.get(kind, []))

    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.plugins if not p.error}

    def version_of(self, plugin: str) -> str:
        return next((p.version for p in self.plugins if p.name == plugin), "unknown")

    def get(self, kind: str, name: str) -> Registered:
        """Find a contribution by bare (``sft``) or qualified (``forge-hf:sft``) name, or raise a one-line error."""
        what = singular(kind)
        candidates = self.all(kind)
        if ":" in name:
            plugin, _, bare = name.partition(":")
            info = self._plugin(plugin)
            if info is None:
                raise NotFoundError(
                    f"unknown plugin '{plugin}' in {what} '{name}'; installed: "
                    + ", ".join(p.name for p in self.plugins)
                )
            if info.error:
                raise PluginError(f"{what} '{name}' is unavailable: plugin {info.name} failed to load ({info.error})")
            matches = [r for r in candidates if r.plugin == info.name and r.name == bare]
        else:
            matches = [r for r in candidates if r.name == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            spelled = " or ".join(m.qualified for m in matches)
            owners = " and ".join(m.plugin for m in matches)
            raise PluginError(f"{what} '{name}' is provided by {owners}; name one of them: {spelled}")
        raise NotFoundError(self._unknown_message(kind, name))

    def _plugin(self, name: str) -> PluginInfo | None:
        wanted = _normalize(name)
        for info in self.plugins:
            if _normalize(info.name) == wanted or _normalize(info.module.split(".")[0]) == wanted:
                return info
        return None

    def _unknown_message(self, kind: str, name: str) -> str:
        what = singular(kind)
        names = sorted({r.name for r in self.all(kind)})
        message = f"unknown {what} '{name}'; available: {', '.join(names) if names else '(none installed)'}"
        close = difflib.get_close_matches(name.partition(":")[2] or name, names, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
        broken = self.broken()
        if broken:
            message += "; not loaded: " + ", ".join(f"{p.name} ({p.error})" for p in broken)
        return message


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() in {"1", "true", "yes"}


def _wanted(only: set[str] | None, entry_point: metadata.EntryPoint) -> bool:
    if only is None:
        return True
    names = {_normalize(entry_point.name)}
    if entry_point.dist is not None:
        names.add(_normalize(entry_point.dist.name))
    return bool(names & only)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _discover(only: set[str] | None) -> Iterable[tuple[str, str, str, Any]]:
    """Yield (plugin name, version, module name, loader) for the core's built-ins and each entry point."""
    import forge

    for module_name in BUILTIN_MODULES:
        yield CORE, forge.__version__, module_name, lambda m=module_name: __import__(m, fromlist=["_"])
    seen: set[str] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist is not None else ep.name
        if _normalize(dist_name) in seen or not _wanted(only, ep):
            continue
        seen.add(_normalize(dist_name))
        version = ep.dist.version if ep.dist is not None else "unknown"
        yield dist_name, version, ep.value, ep.load


def _collect(pm: pluggy.PluginManager, plugin: object, info: PluginInfo) -> list[Registered]:
    """Ask one plugin for its contributions; raise PluginError describing the first problem."""
    unknown = [
        name
        for name in dir(plugin)
        if pm.parse_hookimpl_opts(plugin, name) is not None and name not in _HOOK_BY_KIND.values()
    ]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_HOOK_BY_KIND.values()), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise PluginError(f"{unknown[0]} is not a forge hook{hint}")
    found: list[Registered] = []
    for kind, hook_name in _HOOK_BY_KIND.items():
        expected = KINDS[kind]
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(item: Any, name: str | None = None, _kind: str = kind, _type: type = expected) -> None:
                if _kind == "commands" and callable(item) and not isinstance(item, Command):
                    item = Command(name=name or item.__name__.replace("_", "-"), function=item)
                if not isinstance(item, _type):
                    raise PluginError(
                        f"{_HOOK_BY_KIND[_kind]} registered {type(item).__name__!s}; expected forge.{_type.__name__}"
                    )
                name_of: str = getattr(item, "name", "")
                if not _NAME.match(name_of):
                    raise PluginError(f"invalid {singular(_kind)} name {name_of!r} (use lowercase, digits, - . _)")
                if any(r.name == name_of and r.item.kind == _kind for r in found):
                    raise PluginError(f"{singular(_kind)} '{name_of}' registered twice")
                found.append(Registered(info.name, item))

            arguments = {"register": register}
            impl.function(**{a: arguments[a] for a in impl.argnames if a in arguments})
    return found


def load_plugins(only: Iterable[str] | None = None) -> PluginSet:
    """Load the core's built-in plugins and every installed plugin (or only those named in ``FORGE_PLUGINS``)."""
    if only is None and os.environ.get(ONLY_ENV, "").strip():
        only = [n for n in os.environ[ONLY_ENV].split(",") if n.strip()]
    wanted = {_normalize(n.strip()) for n in only} if only is not None else None
    pm = pluggy.PluginManager("forge")
    pm.add_hookspecs(hookspecs)
    plugins: list[PluginInfo] = []
    items: dict[str, list[Registered]] = {kind: [] for kind in KINDS}
    for name, version, module_name, loader in _discover(wanted):
        info = PluginInfo(name=name, version=version, module=module_name)
        plugins.append(info)
        try:
            plugin: ModuleType = loader()
            if plugin in pm.get_plugins():  # two entry points naming one module
                continue
            pm.register(plugin, name=f"{name}:{module_name}")
            found = _collect(pm, plugin, info)
        except Exception as exc:
            if strict():
                raise
            info.error = _describe(exc)
            print(
                f"forge: plugin {name} failed to load: {info.error} (FORGE_STRICT=1 shows the traceback)",
                file=sys.stderr,
            )
            continue
        for registered in found:
            items[registered.item.kind].append(registered)
            info.contributions.setdefault(registered.item.kind, []).append(registered.name)
    return PluginSet(plugins, items)


_CACHE: dict[str, PluginSet] = {}


def get_plugins() -> PluginSet:
    """The process-wide plugin set (loaded once per value of ``FORGE_PLUGINS``)."""
    key = os.environ.get(ONLY_ENV, "")
    if key not in _CACHE:
        _CACHE[key] = load_plugins()
    return _CACHE[key]
