"""Reading and validating training data: JSONL, JSON, CSV, Parquet files or a Hugging Face Hub dataset name.

Every problem names the file and line (or row): ``train.jsonl:12: field 'completion' is empty``.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.errors import DataError

MAX_PROBLEMS = 20


@dataclass
class Rows:
    """Records and where each came from (``file:line``)."""

    records: list[dict[str, Any]]
    where: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.records)


def read_rows(source: str) -> Rows:
    """Read records from a local file (by suffix) or, for a name that is not a file, the Hub."""
    path = Path(source)
    if not path.exists():
        return _read_hub(source)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported data format {suffix!r} (use .jsonl, .json, .csv, .tsv or .parquet)")


def _read_jsonl(path: Path) -> Rows:
    records, where = [], []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
            where.append(f"{path}:{number}")
    if not records:
        raise DataError(f"{path}: no records")
    return Rows(records, where, str(path))


def _read_json(path: Path) -> Rows:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects")
    if not data:
        raise DataError(f"{path}: no records")
    return Rows(data, [f"{path}: record {i}" for i in range(1, len(data) + 1)], str(path))


def _read_csv(path: Path, delimiter: str) -> Rows:
    records, where = [], []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            if not reader.fieldnames:
                raise DataError(f"{path}:1: no header row")
            for record in reader:
                if None in record:
                    raise DataError(f"{path}:{reader.line_num}: more values than header columns")
                records.append(dict(record))
                where.append(f"{path}:{reader.line_num}")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: {exc}") from None
    if not records:
        raise DataError(f"{path}: no records")
    return Rows(records, where, str(path))


def _read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"{path}: unreadable Parquet ({exc})") from None
    if not records:
        raise DataError(f"{path}: no records")
    return Rows(records, [f"{path}: row {i}" for i in range(1, len(records) + 1)], str(path))


def _read_hub(name: str) -> Rows:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split="train")
    except Exception as exc:  # offline, unknown name, gated...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data {name}: not a local file, and the Hub dataset could not be loaded ({first})") from None
    records = dataset.to_list()
    return Rows(records, [f"{name}: row {i}" for i in range(1, len(records) + 1)], name)


# -- validation ---------------------------------------------------------------------------------------------------
Check = Callable[[dict[str, Any]], str | None]


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def text_or_messages(record: dict[str, Any], field: str) -> str | None:
    """None when ``record[field]`` is a non-empty string or a non-empty list of chat messages."""
    if field not in record or record[field] is None:
        return f"missing field '{field}'"
    value = record[field]
    if isinstance(value, str):
        return None if value.strip() else f"field '{field}' is empty"
    if isinstance(value, list):
        if not value:
            return f"field '{field}' is empty"
        if not _is_messages(value):
            return f"field '{field}' must be a string or a list of {{role, content}} messages"
        if any(not m["content"].strip() for m in value):
            return f"field '{field}' has a message with empty content"
        return None
    return f"field '{field}' must be a string or a list of messages, got {type(value).__name__}"


def validate(rows: Rows, check: Check) -> None:
    """Apply ``check`` to every record; raise one DataError listing up to 20 problems (file:line each)."""
    problems = []
    for record, where in zip(rows.records, rows.where, strict=True):
        problem = check(record)
        if problem:
            problems.append(f"{where}: {problem}")
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise DataError(problems[0], problems)


def detect_sft_format(rows: Rows) -> str:
    """``messages``, ``prompt-completion`` or ``text``, from the first record's fields."""
    first = rows.records[0]
    if "messages" in first:
        return "messages"
    if "prompt" in first and "completion" in first:
        return "prompt-completion"
    if "text" in first:
        return "text"
    raise DataError(f"{rows.where[0]}: expected a 'messages' list, 'prompt' and 'completion', or 'text' "
                    f"(found fields: {', '.join(first) or 'none'})")


def check_sft(kind: str) -> Check:
    def check(record: dict[str, Any]) -> str | None:
        if kind == "messages":
            problem = text_or_messages(record, "messages")
            if problem:
                return problem
            if not isinstance(record["messages"], list):
                return "field 'messages' must be a list of {role, content} messages"
            if record["messages"][-1]["role"] != "assistant":
                return "the last message must be the assistant's (it is what the model learns to write)"
            return None
        if kind == "prompt-completion":
            return text_or_messages(record, "prompt") or text_or_messages(record, "completion")
        return text_or_messages(record, "text")

    return check


def check_fields(*fields: str) -> Check:
    def check(record: dict[str, Any]) -> str | None:
        for field in fields:
            problem = text_or_messages(record, field)
            if problem:
                return problem
        return None

    return check


def to_prompt_completion(record: dict[str, Any]) -> dict[str, Any]:
    """Chat ``messages`` → conversational prompt/completion, so the loss falls on the last assistant turn only."""
    messages = record["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def split_holdout(records: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded random held-out split; at least one record on each side when ``fraction`` > 0."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    import random

    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    size = min(len(records) - 1, max(1, round(len(records) * fraction)))
    held = set(order[:size])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]
