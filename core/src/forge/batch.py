"""Batch prediction (``forge predict``): a file of rows through an artifact's in-process predictor
(:func:`forge.load_predictor`) into a file of predictions, in chunks.

- Memory is bounded by the chunk: rows are read ``chunk_rows`` at a time, sent to the model ``batch_size`` at a
  time, and each chunk's predictions are written to a part file in a work directory beside the output
  (``.OUT.forge-predict/``) before the next chunk is read.
- Each part is written under a temporary name and renamed, so the work directory only ever holds complete chunks:
  ``--resume`` skips the rows of the parts already there and goes on. ``state.json`` there records what the job was
  (input size and modification time, artifact, options, chunk size) so a resume never mixes two different jobs.
- The output appears only at the end, whole: the parts are concatenated into a temporary file renamed to the
  output. Rows that could not be predicted go to ``OUT.errors.jsonl`` (row number, id, reason).
- Within a chunk, rows are sent to the model sorted by length (batches of similar length pad little) and written
  back in file order.
- A batch the predictor rejects as a whole is retried row by row, so one bad row (empty text, a wrong type) fails
  alone and the others are still predicted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.artifacts import Artifact, write_json_atomic
from forge.errors import DataError, ForgeError
from forge.tables import BadRow, concatenate_parts, count_rows, file_format, read_rows, write_part

STATE = "state.json"
# what a predictor raises for a row it cannot take (DataError is a ForgeError)
ROW_ERRORS: tuple[type[BaseException], ...] = (ForgeError, ValueError, TypeError, KeyError)


@dataclass
class PredictJob:
    artifact: Artifact
    input: Path
    output: Path
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    chunk_rows: int = 10_000
    id_column: str | None = "id"
    resume: bool = False
    overwrite: bool = False

    @property
    def work_dir(self) -> Path:
        return self.output.parent / f".{self.output.name}.forge-predict"

    @property
    def errors_path(self) -> Path:
        return self.output.parent / f"{self.output.name}.errors.jsonl"

    def fingerprint(self) -> dict[str, Any]:
        stat = self.input.stat()
        return {"input": str(self.input.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
                "artifact": str(self.artifact.path.resolve()), "options": self.options,
                "batch_size": self.batch_size, "chunk_rows": self.chunk_rows, "id_column": self.id_column,
                "output_format": file_format(self.output, "--output")}


@dataclass
class PredictSummary:
    output: str
    rows: int
    predicted: int
    failed: int
    errors: str | None
    resumed_rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        done = self.rows - self.resumed_rows
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "rows_per_s": round(self.rows_per_s, 1)}


def check(job: PredictJob) -> None:
    """Every problem with the job's paths before a model is loaded (exit 2)."""
    if not job.input.exists():
        raise DataError(f"--input {job.input}: no such file")
    if not job.input.is_file() or not os.access(job.input, os.R_OK):
        raise DataError(f"--input {job.input}: not a readable file")
    file_format(job.input, "--input")
    file_format(job.output, "--output")
    if job.output.resolve() == job.input.resolve():
        raise DataError(f"--output {job.output}: is the input file")
    if job.output.exists() and not job.overwrite:
        raise DataError(f"--output {job.output}: already exists (--overwrite replaces it)")
    if job.work_dir.exists() and not (job.resume or job.overwrite):
        raise DataError(f"--output {job.output}: an unfinished prediction into it exists ({job.work_dir}); "
                        "--resume continues it, --overwrite starts over")
    if job.resume and job.work_dir.exists():
        state = job.work_dir / STATE
        recorded = json.loads(state.read_text(encoding="utf-8")) if state.is_file() else None
        if recorded != job.fingerprint():
            raise DataError(f"--resume: the unfinished prediction into {job.output} was started with another input, "
                            "artifact or options (or the input changed); --overwrite starts over")


def _done_parts(work: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1].split(".")[0]) for p in work.glob("part-*.*") if not p.name.endswith(".tmp"))


def predict_rows(predictor: Any, rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any] | str]]:
    """Predictions (or a reason) for each row. A batch rejected because of one row (``rows.I...`` in the message,
    as forge's predictors say it) is split around that row; a rejection naming no row splits the batch in halves.
    So each bad row costs one more model call on the rest, not a call per row."""
    answers: dict[int, dict[str, Any] | str] = {}
    pending = [rows]
    while pending:
        segment = pending.pop()
        if not segment:
            continue
        try:
            outputs = predictor.predict([r for _, r in segment])
        except ROW_ERRORS as error:
            if len(segment) == 1:
                answers[segment[0][0]] = _reason(error)
                continue
            named = re.match(r"rows\.(\d+)\b", str(error))
            if named and int(named.group(1)) < len(segment):
                bad = int(named.group(1))
                answers[segment[bad][0]] = _reason(error, bad)
                pending += [segment[:bad], segment[bad + 1:]]
            else:
                half = len(segment) // 2
                pending += [segment[:half], segment[half:]]
            continue
        if len(outputs) != len(segment):
            raise ForgeError(f"the predictor returned {len(outputs)} outputs for {len(segment)} rows")
        answers.update((n, out) for (n, _), out in zip(segment, outputs, strict=True))
    return [(n, answers[n]) for n, _ in rows]


def _size(row: dict[str, Any]) -> int:
    """Characters of text in a row: what its token count (and so its batch's padded length) grows with."""
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v, default=str)) if isinstance(v, (list, dict)) else 0
               for v in row.values())


def _reason(error: BaseException, index: int = 0) -> str:
    """The predictor's message without its position in the batch (the report gives the file's row number)."""
    text = str(error) if not isinstance(error, KeyError) else f"missing field {error}"
    text = re.sub(rf"^rows\.{index}(\.|: ?)", "", text)
    return text.removeprefix("row: ") or type(error).__name__


def run(job: PredictJob, predictor: Any, progress: Callable[..., Any] | None = None,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr), engine: Any = None) -> PredictSummary:
    """Run ``job`` with a loaded ``predictor`` (``predict(rows) -> outputs``), or with an ``engine`` whose
    ``predict_batches(batches)`` answers a chunk's batches elsewhere (:mod:`forge.ray_predict`; ``predictor`` is
    then unused)."""
    started = time.perf_counter()
    kind = file_format(job.output, "--output")
    work = job.work_dir
    if work.exists() and not job.resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(work / STATE, job.fingerprint())
    done = _done_parts(work)
    if done != list(range(len(done))):
        raise ForgeError(f"{work}: parts {done} are not a complete sequence; --overwrite starts over")
    skip = len(done) * job.chunk_rows
    if skip:
        log(f"resuming after row {skip} ({len(done)} complete chunks)")
    total = count_rows(job.input)
    bar = progress(total=total, initial=min(skip, total or skip), desc="predicting", unit="row") if progress else None
    rows_seen = failed = 0
    try:
        for index, chunk in enumerate(read_rows(job.input, job.chunk_rows)):
            rows_seen += len(chunk)
            if index < len(done):
                continue
            predictions: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            good: list[tuple[int, dict[str, Any]]] = []
            ids: dict[int, Any] = {}
            for number, row in chunk:
                if isinstance(row, BadRow):
                    errors.append({"row": number, "error": row.reason})
                    continue
                if job.id_column and job.id_column in row:
                    ids[number] = row[job.id_column]
                good.append((number, row))
            # batches of similar length pad little (a batch is as long as its longest row): sort the chunk by a
            # cheap size proxy, predict, and put the rows back in file order
            good.sort(key=lambda item: _size(item[1]))
            batches = [good[start:start + job.batch_size] for start in range(0, len(good), job.batch_size)]
            # the same batches go to the model on either engine, so the outputs are the same
            answered = engine.predict_batches(batches) if engine is not None else \
                (predict_rows(predictor, batch) for batch in batches)
            for batch, answers in zip(batches, answered, strict=True):
                for number, answer in answers:
                    head = {"row": number, **({"id": ids[number]} if number in ids else {})}
                    if isinstance(answer, str):
                        errors.append({**head, "error": answer})
                    else:
                        predictions.append({**head, **answer})
                if bar is not None:
                    bar.update(len(batch))
            if bar is not None:
                bar.update(len(chunk) - len(good))
            predictions.sort(key=lambda p: p["row"])
            errors.sort(key=lambda e: e["row"])
            _write_chunk(work, index, predictions, errors, kind)
            failed += len(errors)
    finally:
        if bar is not None:
            bar.close()
    failed = _finish(job, work, kind)
    return PredictSummary(output=str(job.output), rows=rows_seen, predicted=rows_seen - failed, failed=failed,
                          errors=str(job.errors_path) if failed else None, resumed_rows=min(skip, rows_seen),
                          seconds=round(time.perf_counter() - started, 3))


def _write_chunk(work: Path, index: int, predictions: list[dict[str, Any]], errors: list[dict[str, Any]],
                 kind: str) -> None:
    """The chunk's errors, then its predictions (the part file is the chunk's completion mark), each renamed into
    place."""
    errors_part = work / f"errors-{index:06d}.jsonl"
    tmp = errors_part.with_name(errors_part.name + ".tmp")
    tmp.write_text("".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in errors), encoding="utf-8")
    os.replace(tmp, errors_part)
    part = work / f"part-{index:06d}.{kind}"
    tmp = part.with_name(part.name + ".tmp")
    write_part(tmp, predictions, kind)
    os.replace(tmp, part)


def _finish(job: PredictJob, work: Path, kind: str) -> int:
    """Concatenate the parts into the output and the errors beside it (each atomically); returns the failed count."""
    indexes = _done_parts(work)
    parts = [work / f"part-{i:06d}.{kind}" for i in indexes]
    parts = [p for p in parts if _has_rows(p, kind)] or parts[:1]
    tmp = job.output.parent / f".{job.output.name}.tmp"
    concatenate_parts(parts, tmp, kind)
    error_parts = [work / f"errors-{i:06d}.jsonl" for i in indexes]
    failed = sum(1 for p in error_parts if p.exists() for line in p.open("rb") if line.strip())
    if failed:
        errors_tmp = job.errors_path.parent / f".{job.errors_path.name}.tmp"
        concatenate_parts([p for p in error_parts if p.exists()], errors_tmp, "jsonl")
        os.replace(errors_tmp, job.errors_path)
    else:
        job.errors_path.unlink(missing_ok=True)  # an old report would describe another output
    os.replace(tmp, job.output)
    shutil.rmtree(work, ignore_errors=True)
    return failed


def _has_rows(part: Path, kind: str) -> bool:
    if kind == "parquet":
        import pyarrow.parquet as pq

        return bool(pq.ParquetFile(part).metadata.num_rows)
    return part.stat().st_size > 0 and (kind != "csv" or part.read_bytes().count(b"\n") > 1)
