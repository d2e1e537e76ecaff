"""``forge eval ARTIFACT --suite NAME``: evaluate an artifact, keep the result, compare with a baseline, gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer


def eval_command(
    artifact: str = typer.Argument(..., help="A run directory, an artifact or export directory, or "
                                             "models:/NAME/VERSION or models:/NAME@ALIAS."),
    suite: str = typer.Option(..., "--suite", help="Evaluation suite (forge list-plugins --kind evaluators)."),
    data: Path = typer.Option(None, "--data", "-d", help="Data file to evaluate on (some suites have a default)."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Suite option key=value (repeatable)."),
    baseline: str = typer.Option(None, "--baseline", help="Compare with this artifact or reference (stored result "
                                                            "reused when there is one)."),
    gates: list[str] = typer.Option([], "--gate", help="METRIC OP BOUND, e.g. 'accuracy>=0.85', "
                                                       "'exact_match>=baseline-0.01' (repeatable); a failed gate "
                                                       "exits 3."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap intervals (and of sampling suites)."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Result directory (default "
                                                                      "ARTIFACT/evals/SUITE-TIME)."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout (and nothing else)."),
) -> None:
    """Evaluate an artifact with a suite. Example: forge eval runs/classify-1 --suite classification --data test.csv
    --gate "accuracy>=0.85"
    """
    from forge.config import ConfigSource, apply_overrides
    from forge.eval_engine import EvalOptions, Hooks, evaluate, log_line, prepare, stop_requests, summary_lines
    from forge.gates import GateFailed

    source = ConfigSource()
    apply_overrides(source, list(overrides))
    options: dict[str, Any] = dict(source.values)
    prepared = prepare(EvalOptions(reference=artifact, suite=suite, data=data, options=options, gates=list(gates),
                                   baseline=baseline, seed=seed, output_dir=output_dir))
    try:
        with stop_requests() as should_stop:
            outcome = evaluate(prepared, Hooks(log=log_line, should_stop=should_stop))
    except KeyboardInterrupt:
        typer.echo("forge: eval interrupted; nothing was kept", err=True)
        raise typer.Exit(130) from None
    lines = summary_lines(outcome)
    if as_json:
        sys.stdout.write(json.dumps(outcome.eval_json, indent=2) + "\n")
        for line in lines:
            typer.echo(line, err=True)
    else:
        for line in lines:
            typer.echo(line)
    failed = outcome.failed_gates
    if failed:
        problems = [f"gate failed: {g.gate.expr} ({g.gate.metric} = {g.value:.4g}, bound {g.bound:.4g})"
                    for g in failed]
        raise GateFailed(problems[0], problems)
