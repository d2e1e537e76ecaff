"""Row files for batch prediction: CSV, JSON Lines and Parquet, read and written in chunks so memory stays bounded
whatever the file's size. The format is chosen by the file's suffix.

    for chunk in read_rows(Path("in.csv"), chunk_rows=10_000):   # lists of (row_number, dict), numbers from 1
        ...
    write_part(Path("part.parquet"), rows)                         # one chunk of output rows
    concatenate_parts([part1, part2], Path("out.parquet"))         # parts into one file of the same format
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forge.errors import DataError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path, role: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the suffix of ``path``; ``role`` names the option in the error."""
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise DataError(f"{role} {path}: unknown file type '{path.suffix or '(none)'}'; use .csv, .jsonl or .parquet")
    return found


class BadRow:
    """A row that could not be read (a JSON Lines line that is not a JSON object): kept in order so it is reported
    with its row number instead of stopping the job."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


Row = dict[str, Any] | BadRow


def count_rows(path: Path) -> int | None:
    """Rows in the file, cheaply: Parquet's metadata; newlines for JSONL and CSV (a CSV with quoted line breaks
    counts more, which only makes a progress bar end early)."""
    kind = file_format(path, "--input")
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(0, lines - (1 if kind == "csv" else 0))


def read_rows(path: Path, chunk_rows: int) -> Iterator[list[tuple[int, Row]]]:
    """Chunks of ``(row_number, row)``; row numbers count data rows from 1 (a CSV header is not a row)."""
    kind = file_format(path, "--input")
    rows = {"csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[kind](path, chunk_rows)
    chunk: list[tuple[int, Row]] = []
    for number, row in enumerate(rows, start=1):
        chunk.append((number, row))
        if len(chunk) >= chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_rows(path: Path, chunk_rows: int) -> Iterator[Row]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            if not reader.fieldnames:
                raise DataError(f"--input {path}: empty CSV (no header line)")
            for record in reader:
                if None in record:  # more cells than header names
                    yield BadRow(f"{len(reader.fieldnames) + len(record[None])} cells for "
                                 f"{len(reader.fieldnames)} columns")
                    continue
                yield {k: v for k, v in record.items() if v is not None}
        except UnicodeDecodeError as exc:
            raise DataError(f"--input {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise DataError(f"--input {path}:{reader.line_num}: unreadable CSV ({exc})") from None


def _jsonl_rows(path: Path, chunk_rows: int) -> Iterator[Row]:
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield BadRow(f"not valid JSON ({getattr(exc, 'msg', None) or exc})")
                continue
            yield record if isinstance(record, dict) else BadRow(f"expected a JSON object, got {type(record).__name__}")


def _parquet_rows(path: Path, chunk_rows: int) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"--input {path}: unreadable Parquet ({exc})") from None
    for batch in file.iter_batches(batch_size=chunk_rows):
        yield from batch.to_pylist()


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted columns (``scores.positive``); lists as JSON text: what a CSV cell can hold."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, ensure_ascii=False)
        else:
            out[name] = value
    return out


def write_part(path: Path, rows: list[dict[str, Any]], kind: str) -> None:
    """One chunk of output rows in ``kind`` (CSV parts carry a header; concatenation keeps the first)."""
    if kind == "jsonl":
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    elif kind == "csv":
        flat = [_flat(r) for r in rows]
        columns = list(dict.fromkeys(k for r in flat for k in r))
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(flat)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)


def concatenate_parts(parts: list[Path], target: Path, kind: str) -> None:
    """Parts (in order) into ``target``, streaming: one part in memory at a time."""
    if kind == "jsonl":
        with target.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        out.write(block)
    elif kind == "csv":
        columns: list[str] | None = None
        with target.open("w", newline="", encoding="utf-8") as out:
            writer: csv.DictWriter[str] | None = None
            for part in parts:
                with part.open(newline="", encoding="utf-8") as handle:
                    reader = csv.DictReader(handle)
                    if columns is None:
                        columns = list(reader.fieldnames or [])
                        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
                        writer.writeheader()
                    else:
                        new = [c for c in reader.fieldnames or [] if c not in columns]
                        if new:
                            raise DataError(f"predictions grew columns the first chunk did not have: {new}")
                    assert writer is not None
                    writer.writerows(reader)
            if columns is None:
                out.write("")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer_pq: pq.ParquetWriter | None = None
        try:
            for part in parts:
                table = pq.read_table(part)
                if writer_pq is None:
                    writer_pq = pq.ParquetWriter(target, table.schema)
                elif table.schema != writer_pq.schema:
                    table = table.cast(writer_pq.schema)
                writer_pq.write_table(table)
            if writer_pq is None:
                pq.write_table(pa.table({}), target)
        finally:
            if writer_pq is not None:
                writer_pq.close()
