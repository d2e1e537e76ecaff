"""Which provider loads a run's model: the one place that ranks providers, chooses one and falls back.

    choice = ProviderChoice.select(plugins.all("providers"), requested="auto")   # at planning: nothing heavy
    loaded = choice.load(ModelRequest(model="smollm2-135m-instruct"), log)       # in the recipe, via ctx.load_model

``select`` picks the provider the user named, or the best available one (highest ``priority`` among those whose
``available()`` says yes) and remembers why better ones were skipped. ``load`` asks the chosen provider; when the
user did not name one and it raises :class:`~forge.models.ProviderUnavailable` for this request, the next available
provider is tried and the reason is kept. ``record()`` is what the run manifest says about it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forge.dotted import resolve
from forge.errors import ForgeError
from forge.models import LoadedModel, ModelRequest, ProviderUnavailable

if TYPE_CHECKING:
    from forge.contributions import Registered

AUTO = "auto"


def ranked(providers: Sequence[Registered]) -> list[Registered]:
    """Providers best first: highest ``priority``, then registration order."""
    return sorted(providers, key=lambda r: -r.item.priority)


@dataclass
class ProviderChoice:
    """The provider a run uses: what was asked (``requested``), what was chosen, and what was passed over and why
    (``skipped``: not available on this machine; ``fallback_from``: refused this particular request)."""

    requested: str
    chosen: Registered
    candidates: list[Registered] = field(default_factory=list)  # available providers to fall back to, best first
    skipped: dict[str, str] = field(default_factory=dict)
    fallback_from: dict[str, str] = field(default_factory=dict)
    tasks_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # skipped provider -> tasks it serves

    @property
    def explicit(self) -> bool:
        return self.requested != AUTO

    @classmethod
    def select(cls, providers: Sequence[Registered], requested: str | None, find: Callable[[str], Registered]
               | None = None) -> ProviderChoice:
        """Choose without loading anything: the named provider (``find`` resolves bare or qualified names), or the
        best available one. Raises a one-line :class:`ForgeError` when none can run here."""
        if requested and requested != AUTO:
            if find is None:
                matches = [p for p in providers if requested in (p.name, p.qualified)]
                if not matches:
                    raise ForgeError(f"unknown provider '{requested}'; available: "
                                     + ", ".join(sorted(p.name for p in providers)))
                chosen = matches[0]
            else:
                chosen = find(requested)
            reason = chosen.item.unavailable_reason()
            if reason:
                raise ForgeError(f"provider {chosen.name} cannot run here: {reason}")
            return cls(requested=requested, chosen=chosen)
        if not providers:
            raise ForgeError("this recipe needs a model provider and none is installed (pip install forge-hf)")
        skipped: dict[str, str] = {}
        tasks_of: dict[str, tuple[str, ...]] = {}
        available: list[Registered] = []
        for candidate in ranked(providers):
            reason = candidate.item.unavailable_reason()
            if reason is None:
                available.append(candidate)
            elif not available:  # only providers ranked above the chosen one were "skipped"
                skipped[candidate.name] = reason
                tasks_of[candidate.name] = tuple(candidate.item.tasks)
        if not available:
            raise ForgeError("no provider can run here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        return cls(requested=AUTO, chosen=available[0], candidates=available[1:], skipped=skipped, tasks_of=tasks_of)

    def load(self, request: ModelRequest, log: Callable[[str], None] = lambda message: None) -> LoadedModel:
        """Load ``request`` with the chosen provider, falling back (when the user did not name one) to the next
        available provider that accepts the request; ``chosen`` ends up being the one that loaded it."""
        # a provider that does not serve this task (Unsloth and sequence classification) is neither tried nor
        # mentioned: it was never a candidate for this request
        self.skipped = {k: v for k, v in self.skipped.items() if _serves(self.tasks_of.get(k, ()), request.task)}
        chain = [self.chosen] if self.explicit else [self.chosen, *self.candidates]
        for provider in chain:
            if not self.explicit and not _serves(provider.item.tasks, request.task):
                continue
            try:
                loaded: LoadedModel = resolve(provider.item.load)(request)
            except ProviderUnavailable as exc:
                if self.explicit:
                    raise ForgeError(f"provider {provider.name} cannot run this: {exc}") from None
                self.fallback_from[provider.name] = str(exc)
                log(f"provider {provider.name} cannot run this ({exc}); falling back")
                continue
            self.chosen = provider
            if self.skipped:
                log("provider " + "; ".join(f"{k} skipped: {v}" for k, v in self.skipped.items()))
            return loaded
        raise ForgeError("no provider could load the model: "
                         + "; ".join(f"{k}: {v}" for k, v in self.fallback_from.items()))

    def record(self, info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The manifest's ``provider`` entry: name, plugin, requested, skipped/fallback reasons, load facts."""
        facts: dict[str, Any] = {"name": self.chosen.name, "plugin": self.chosen.plugin, "requested": self.requested}
        if self.skipped:
            facts["skipped"] = dict(self.skipped)
        if self.fallback_from:
            facts["fallback_from"] = dict(self.fallback_from)
        return {**facts, **(info or {})}


def _serves(tasks: tuple[str, ...], task: str) -> bool:
    return not tasks or task in tasks
