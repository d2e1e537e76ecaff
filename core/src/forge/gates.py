"""Gates: ``--gate "accuracy>=0.85"``, ``--gate "exact_match>=baseline-0.01"``, ``--gate "mase<1"``.

A gate is ``METRIC OP BOUND`` where OP is one of ``>= <= > < ==`` and BOUND is a number or ``baseline``, optionally
``baseline+X`` / ``baseline-X`` (the same metric of the ``--baseline`` artifact on the same suite and data).
Gates compare the point estimate of a metric (``{"value": ..., "low": ..., "high": ...}`` in ``eval.json``).

Parsing errors and unknown metrics are bad input (:class:`~forge.errors.ConfigError`, exit 2); a gate that parses
and fails is reported by :class:`GateResult` and makes ``forge eval`` exit 3 (:class:`GateFailed`).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from forge.errors import ConfigError, ForgeError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_GATE = re.compile(
    rf"^\s*(?P<metric>[A-Za-z_][\w./-]*)\s*(?P<op>>=|<=|==|>|<)\s*"
    rf"(?:(?P<number>{_NUMBER})|(?P<baseline>baseline)\s*(?:(?P<sign>[+-])\s*(?P<offset>{_NUMBER}))?)\s*$"
)


class GateFailed(ForgeError):
    """One or more gates failed: exit code 3 (not bad input, not a bug)."""

    exit_code = 3


@dataclass(frozen=True)
class Gate:
    """A parsed gate expression."""

    expr: str
    metric: str
    op: str
    number: float | None = None
    baseline_offset: float | None = None  # set when the bound is ``baseline[+-X]``

    @property
    def needs_baseline(self) -> bool:
        return self.baseline_offset is not None

    def bound(self, baseline: Mapping[str, Any] | None) -> float:
        if self.baseline_offset is None:
            assert self.number is not None
            return self.number
        if baseline is None:
            raise ConfigError(f"--gate {self.expr!r}: compares with the baseline, but no --baseline was given")
        if self.metric not in baseline:
            raise ConfigError(f"--gate {self.expr!r}: the baseline has no metric {self.metric!r} "
                              f"(it has: {', '.join(sorted(baseline)) or 'none'})")
        return metric_value(baseline[self.metric]) + self.baseline_offset

    def check(self, metrics: Mapping[str, Any], baseline: Mapping[str, Any] | None = None) -> GateResult:
        """Check against ``metrics`` (name → value or ``{"value": ...}``); an unknown metric is bad input."""
        if self.metric not in metrics:
            raise ConfigError(f"--gate {self.expr!r}: unknown metric {self.metric!r} "
                              f"(this suite gives: {', '.join(sorted(metrics)) or 'none'})")
        value = metric_value(metrics[self.metric])
        bound = self.bound(baseline)
        passed = not math.isnan(value) and _OPS[self.op](value, bound)
        return GateResult(gate=self, value=value, bound=bound, passed=passed)


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float
    bound: float
    passed: bool

    def describe(self) -> str:
        status = "passed" if self.passed else "FAILED"
        return f"gate {self.gate.expr}: {status} ({self.gate.metric} = {self.value:.4g}, bound {self.bound:.4g})"

    def to_json(self) -> dict[str, Any]:
        return {"expr": self.gate.expr, "metric": self.gate.metric, "op": self.gate.op, "value": self.value,
                "bound": self.bound, "passed": self.passed}


def metric_value(entry: Any) -> float:
    """The point estimate of a metric entry: a number, or ``{"value": number, ...}`` as stored in eval.json."""
    if isinstance(entry, Mapping):
        entry = entry.get("value")
    try:
        return float(entry)
    except (TypeError, ValueError):
        return float("nan")


def parse_gate(expr: str) -> Gate:
    """Parse ``METRIC OP BOUND``; a malformed expression is a one-line :class:`ConfigError`."""
    match = _GATE.match(expr or "")
    if match is None:
        raise ConfigError(f"--gate {expr!r}: does not parse; expected METRIC OP BOUND with OP one of "
                          f"{' '.join(_OPS)} and BOUND a number or baseline[+-X], e.g. 'accuracy>=0.85'")
    if match["number"] is not None:
        return Gate(expr=expr.strip(), metric=match["metric"], op=match["op"], number=float(match["number"]))
    offset = float(match["offset"]) if match["offset"] is not None else 0.0
    if match["sign"] == "-":
        offset = -offset
    return Gate(expr=expr.strip(), metric=match["metric"], op=match["op"], baseline_offset=offset)


def parse_gates(exprs: Iterable[str]) -> list[Gate]:
    """Parse every expression; all malformed ones are reported together, one per line."""
    gates, errors = [], []
    for expr in exprs:
        try:
            gates.append(parse_gate(expr))
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    return gates


def check_gates(gates: Iterable[Gate], metrics: Mapping[str, Any],
                baseline: Mapping[str, Any] | None = None) -> list[GateResult]:
    """Check every gate; unknown metrics / a missing baseline are reported together as bad input."""
    results, errors = [], []
    for gate in gates:
        try:
            results.append(gate.check(metrics, baseline))
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    return results
