"""``forge predict ARTIFACT --input FILE --output FILE``: score a file of rows with an artifact, in chunks.

    forge predict runs/classify-1 --input reviews.csv --output scored.parquet
    forge predict runs/classify-1/exports/onnx-int8 -i big.jsonl -o out.jsonl --batch-size 64 --resume

Exit status: 0 every row predicted; 4 the output is complete but some rows could not be predicted (they are in
``OUT.errors.jsonl``, with their row number and the reason); 2 bad input (nothing written); 130 interrupted (the
complete chunks are kept for ``--resume``). See :mod:`forge.batch` for how the job is chunked and resumed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from forge.errors import ForgeError

ROWS_FAILED = 4  # exit status: done, but some rows failed (docs/cli.md)


def predict(
    artifact: str = typer.Argument(..., help="A run directory, artifact directory or export."),
    input: Path = typer.Option(..., "--input", "-i", help="Rows to predict: .csv, .jsonl or .parquet."),
    output: Path = typer.Option(..., "--output", "-o", help="Predictions: .jsonl, .csv or .parquet (by suffix)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Rows per model call."),
    chunk_rows: int = typer.Option(10_000, "--chunk-rows", min=1,
                                   help="Rows read, predicted and written per chunk (memory bound; resume unit)."),
    id_column: str = typer.Option("id", "--id-column", help="Input column copied next to each prediction."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Predictor option key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted prediction into OUTPUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT (and any unfinished prediction)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (an actor pool on Ray Data)."),
    address: str = typer.Option(None, "--address", help="--engine ray: a running Ray cluster (default: start one)."),
    workers: int = typer.Option(None, "--workers", min=1, help="--engine ray: actors (default: one per CPU)."),
) -> None:
    """Predict a file of rows. Example: forge predict runs/classify-1 -i reviews.csv -o scored.jsonl"""
    from forge.batch import PredictJob, check, run
    from forge.cli.chat import open_reference
    from forge.config import ConfigSource, apply_overrides

    if engine not in ("local", "ray"):
        raise ForgeError(f"--engine {engine}: expected local or ray")
    if engine == "local" and (address or workers):
        raise ForgeError("--address/--workers: only with --engine ray")
    source = ConfigSource()
    apply_overrides(source, list(overrides))
    options: dict[str, Any] = {**source.values, "batch_size": batch_size}
    loaded = open_reference(artifact)
    job = PredictJob(artifact=loaded, input=input, output=output, options=options, batch_size=batch_size,
                     chunk_rows=chunk_rows, id_column=id_column or None, resume=resume, overwrite=overwrite)
    check(job)
    try:
        from forge.predictors import load_predictor
    except ImportError:
        raise ForgeError("this forge has no in-process predictors (forge.load_predictor); update forge-core") from None
    from tqdm import tqdm

    def progress(**kw: Any) -> Any:
        return tqdm(dynamic_ncols=True, file=sys.stderr, leave=True, **kw)  # as forge run shows its bar

    if engine == "ray":
        from forge.ray_predict import RayEngine

        ray_engine = RayEngine(loaded.path, options, address=address, workers=workers)
        print(f"predicting on {ray_engine.describe()}", file=sys.stderr, flush=True)
        try:
            summary = run(job, None, progress=progress, engine=ray_engine)
        except KeyboardInterrupt:
            print(f"forge: interrupted; complete chunks are kept: rerun with --resume to continue into {output}",
                  file=sys.stderr)
            sys.exit(130)
        finally:
            ray_engine.close()
        _report(summary, output, as_json)
        return
    print(f"loading {loaded.kind} from {loaded.path}...", file=sys.stderr, flush=True)
    with load_predictor(loaded, options) as predictor:
        try:
            summary = run(job, predictor, progress=progress)
        except KeyboardInterrupt:
            print(f"forge: interrupted; complete chunks are kept: rerun with --resume to continue into {output}",
                  file=sys.stderr)
            sys.exit(130)
    _report(summary, output, as_json)


def _report(summary: Any, output: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_json()))
    failed = f"; {summary.failed} failed (see {summary.errors})" if summary.failed else ""
    print(f"predicted {summary.predicted} of {summary.rows} rows into {output} "
          f"({summary.rows_per_s:.0f} rows/s){failed}", file=sys.stderr)
    if summary.failed:
        raise typer.Exit(ROWS_FAILED)
