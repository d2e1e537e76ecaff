"""Evaluators used by the core's ``forge eval`` tests, installed beside forge_testkit (whose ``descent`` recipe makes
``scalar`` artifacts holding one trained weight, and whose ``text`` exporter makes ``scalar-text`` ones).

Suite ``closeness`` scores the weight against each ``{"target": x}`` line of a JSONL file: ``abs_error`` and
``within`` (|weight - target| <= tol) per example, ``worst`` (no interval). Options: ``tol`` (float), ``pause``
(seconds per example, so a test can interrupt it), ``bad`` (return something that is not an EvalResult).
Suite ``digits`` reads a ``scalar-text`` export: ``weight`` with an interval of its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import forge
from forge import ConfigError, DataError, EvalResult


def closeness(artifact, request):
    options = dict(request.options)
    unknown = set(options) - {"tol", "pause", "bad"}
    if unknown:
        raise ConfigError(f"--set {sorted(unknown)[0]}: unknown closeness option (known: tol, pause, bad)")
    try:
        tol = float(options.get("tol", 1.0))
    except (TypeError, ValueError):
        raise ConfigError(f"--set tol={options['tol']}: not a number") from None
    if request.data is None:
        raise ConfigError("closeness needs --data FILE (JSONL lines {\"target\": x})")
    weight = json.loads((artifact.path / "weight.json").read_text())["weight"]
    targets = []
    for number, line in enumerate(Path(request.data).read_text().splitlines(), 1):
        try:
            targets.append(float(json.loads(line)["target"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{request.data}:{number}: expected {{\"target\": number}}") from None
    errors, within, records = [], [], []
    (request.output_dir / "started").write_text("1")
    for target in request.progress(targets, desc="scoring"):
        if request.should_stop():
            raise KeyboardInterrupt
        time.sleep(float(options.get("pause", 0)))
        error = abs(weight - target)
        errors.append(error)
        within.append(float(error <= tol))
        records.append({"input": target, "expected": target, "output": weight, "score": error})
    (request.output_dir / "errors.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    if options.get("bad"):
        return {"abs_error": 0.0}
    request.log(f"closeness: {len(targets)} targets")
    return EvalResult(metrics={"abs_error": sum(errors) / len(errors), "within": sum(within) / len(within),
                               "worst": max(errors)},
                      per_example={"abs_error": errors, "within": within}, records=records,
                      plots=[request.output_dir / "errors.svg"], extra={"weight": weight})


def digits(artifact, request):
    weight = float((artifact.path / "weight.txt").read_text())
    return EvalResult(metrics={"weight": weight}, intervals={"weight": (weight - 0.5, weight + 0.5)},
                      records=[{"input": None, "output": weight}])


@forge.hookimpl
def register_evaluators(register):
    register(forge.Evaluator(name="closeness", accepts=("scalar",), evaluate=closeness,
                             summary="distance of the weight to targets"))
    register(forge.Evaluator(name="digits", accepts=("scalar-text",), evaluate=digits, summary="the exported text"))
