"""Reading, detecting and checking data files: JSONL, JSON, CSV/TSV, Parquet, Arrow, or a Hugging Face Hub dataset
name; the SFT and preference formats (docs/data.md) mapped onto the recipes' schema.

Every problem names the file and line (or row): ``train.jsonl:12: field 'completion' is empty``. Imports nothing
heavy: pyarrow and ``datasets`` only when a Parquet/Arrow file or a Hub name is read.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    records, where = [], []
    for record, place in iter_source(source):
        records.append(record)
        where.append(place)
    return Rows(records, where, source)


TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow")


def local_file(source: str) -> Path | None:
    """The local data file ``source`` names, checked to be a readable, non-empty regular file; ``None`` when it
    names no local file (a Hub dataset name). Directories, FIFOs, device files, symlink loops and empty files are
    one-line errors."""
    path = Path(source)
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: symlink loop, not a data file") from None
        if path.is_symlink():
            raise DataError(f"{path}: broken symlink (points to {os.readlink(path)})") from None
        if path.suffix.lower() in TABLE_SUFFIXES or source.startswith((".", "/", "~")):
            raise DataError(f"{path}: no such file") from None
        return None
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory; give a data file ({', '.join(TABLE_SUFFIXES)})")
    if stat.S_ISFIFO(mode):
        raise DataError(f"{path}: is a FIFO (named pipe), not a data file")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise DataError(f"{path}: is a device file, not a data file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise DataError(f"{path}: empty file")
    return path


def iter_source(source: str, split: str = "train", subset: str | None = None) -> Iterator[tuple[dict[str, Any], str]]:
    """Records and their ``file:line`` (or ``file: row N``) one at a time: bounded memory for line- and
    batch-oriented formats (JSONL, CSV, Parquet, Arrow). Raises DataError for an unreadable source or one with no
    records."""
    path = local_file(source)
    if path is None:
        rows: Iterator[tuple[dict[str, Any], str]] = _read_hub(source, split, subset)
    else:
        suffix = path.suffix.lower()
        readers: dict[str, Callable[[Path], Iterator[tuple[dict[str, Any], str]]]] = {
            ".jsonl": _read_jsonl, ".json": _read_json, ".csv": lambda p: _read_csv(p, ","),
            ".tsv": lambda p: _read_csv(p, "\t"), ".parquet": _read_parquet, ".arrow": _read_arrow}
        if suffix not in readers:
            raise DataError(f"{path}: unsupported data format {suffix!r} (use {', '.join(TABLE_SUFFIXES)})")
        rows = readers[suffix](path)
    count = 0
    for item in rows:
        count += 1
        yield item
    if not count:
        raise DataError(f"{path or source}: no records")


_loads = json.JSONDecoder().decode  # json.loads without its per-call checks (the lines are str already)


def _read_jsonl(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line or line.isspace():  # (what `not line.strip()` says, without copying the line)
                continue
            try:
                record = _loads(line)
            except json.JSONDecodeError as exc:
                if exc.lineno > 1:  # past the line's own newline: point at the end of the line, as the user sees it
                    exc.colno = len(line.rstrip("\r\n")) + 1
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield record, f"{path}:{number}"


def _read_json(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects")
    for i, record in enumerate(data, start=1):
        yield record, f"{path}: record {i}"


def _read_csv(path: Path, delimiter: str) -> Iterator[tuple[dict[str, Any], str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            if not reader.fieldnames:
                raise DataError(f"{path}:1: no header row")
            for record in reader:
                if None in record:
                    raise DataError(f"{path}:{reader.line_num}: more values than header columns")
                yield dict(record), f"{path}:{reader.line_num}"
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: {exc}") from None


def _batches(path: Path, kind: str, batches: Callable[[], Iterator[Any]]) -> Iterator[tuple[dict[str, Any], str]]:
    number = 0
    try:
        for batch in batches():
            for record in batch.to_pylist():
                number += 1
                yield record, f"{path}: row {number}"
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: unreadable {kind} ({first})") from None


def _read_parquet(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    def batches() -> Iterator[Any]:
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=1024)

    return _batches(path, "Parquet", batches)


def _read_arrow(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """An Arrow IPC file (``pyarrow.ipc.new_file``/Feather v2) or stream (what ``datasets`` saves), memory-mapped."""

    def batches() -> Iterator[Any]:
        import pyarrow as pa

        with pa.memory_map(str(path)) as source:
            try:
                reader: Any = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
                return
            except pa.ArrowInvalid:
                source.seek(0)
            yield from pa.ipc.open_stream(source)

    return _batches(path, "Arrow", batches)


def _read_hub(name: str, split: str = "train", subset: str | None = None) -> Iterator[tuple[dict[str, Any], str]]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, subset, split=split)
    except Exception as exc:  # offline, unknown name, gated...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data {name}: not a local file, and the Hub dataset could not be loaded ({first})") from None
    for i, record in enumerate(dataset, start=1):
        yield record, f"{name}: row {i}"


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


# -- formats -------------------------------------------------------------------------------------------------------
SFT_FORMATS = ("chat", "sharegpt", "alpaca", "input-output", "prompt-completion", "text")
PREFERENCE_FORMATS = ("preference", "chat-pair")
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "system": "system", "tool": "tool", "observation": "tool",
                  "function_call": "assistant"}

PiiPolicy = Literal["ignore", "warn", "block", "redact"]
SftFormat = Literal["auto", "chat", "sharegpt", "alpaca", "input-output", "prompt-completion", "text"]
PreferenceFormat = Literal["auto", "preference", "chat-pair"]


def detect_format(record: dict[str, Any], task: str) -> str | None:
    """The format of a record's fields (None: none fits). ``task``: ``sft`` or ``preference``."""
    if task == "preference":
        if "prompt" in record and "chosen" in record:
            return "preference"
        if isinstance(record.get("chosen"), list) and isinstance(record.get("rejected"), list):
            return "chat-pair"
        return None
    if "messages" in record:
        return "chat"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if "input" in record and "output" in record:
        return "input-output"
    if "prompt" in record and "completion" in record:
        return "prompt-completion"
    if "text" in record:
        return "text"
    return None


_EXPECTED = {
    "sft": "'messages' (chat), 'conversations' (ShareGPT), 'instruction' and 'output' (Alpaca), 'input' and "
           "'output', 'prompt' and 'completion', or 'text'",
    "preference": "'prompt', 'chosen' and 'rejected', or 'chosen' and 'rejected' conversations",
}


class Problem(Exception):
    """A record that does not fit its format (becomes ``file:line: message``)."""


def _text(record: dict[str, Any], field: str, optional: bool = False) -> str:
    value = record.get(field)
    if value is None:
        if optional:
            return ""
        raise Problem(f"missing field '{field}'")
    if not isinstance(value, str):
        raise Problem(f"field '{field}' must be text, got {type(value).__name__}")
    if not optional and (not value or value.isspace()):
        raise Problem(f"field '{field}' is empty")
    return value


def _content(value: Any, index: int) -> str:
    """A message's content: a string, or OpenAI content parts (their text parts joined)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        texts = []
        for part in value:
            if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                raise Problem(f"message {index} has a content part of type {part.get('type')!r}; only text is "
                              "supported")
            texts.append(part["text"])
        return "".join(texts)
    raise Problem(f"message {index} content must be text, got {type(value).__name__}")


def _tool_calls_text(calls: Any, index: int) -> str:
    """Tool calls as the text the model learns to write: one ``<tool_call>{"name", "arguments"}</tool_call>`` each."""
    if not isinstance(calls, list) or not calls:
        raise Problem(f"message {index} 'tool_calls' must be a non-empty list")
    out = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise Problem(f"message {index} has a tool call without a function name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                raise Problem(f"message {index} tool call '{function['name']}' arguments are not valid JSON") from None
        out.append("<tool_call>\n" + json.dumps({"name": function["name"], "arguments": arguments},
                                                ensure_ascii=False) + "\n</tool_call>")
    return "\n".join(out)


def chat_messages(value: Any, field: str = "messages", end_with_assistant: bool = True) -> list[dict[str, str]]:
    """Check OpenAI-style chat messages and return them as ``{role, content}``: roles system/user/assistant/tool;
    an assistant's ``tool_calls`` become ``<tool_call>`` text in its content (any chat template renders them)."""
    if not isinstance(value, list):
        raise Problem(f"field '{field}' must be a list of messages, got {type(value).__name__}")
    if not value:
        raise Problem(f"field '{field}' is empty")
    out = []
    for index, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            raise Problem(f"{field} message {index} must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise Problem(f"{field} message {index} has unknown role {role!r} (expected {', '.join(ROLES)})")
        content = _content(message.get("content"), index)
        if role == "assistant" and message.get("tool_calls"):
            calls = _tool_calls_text(message["tool_calls"], index)
            content = f"{content}\n{calls}" if content and not content.isspace() else calls
        if not content or content.isspace():
            turn = "assistant turn" if role == "assistant" else f"{role} message"
            raise Problem(f"{field} message {index} ({turn}) is empty")
        out.append({"role": role, "content": content})
    if end_with_assistant and out[-1]["role"] != "assistant":
        raise Problem("the last message must be the assistant's (it is what the model learns to write), "
                      f"got {out[-1]['role']!r}")
    return out


def _text_or_chat(record: dict[str, Any], field: str, end_with_assistant: bool) -> str | list[dict[str, str]]:
    value = record.get(field)
    if isinstance(value, list):
        return chat_messages(value, field, end_with_assistant)
    return _text(record, field)


def _system(record: dict[str, Any]) -> list[dict[str, str]]:
    system = record.get("system")
    return [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []


def normalize(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """One record in ``fmt`` → the recipe's schema: ``{"messages"}``, ``{"prompt", "completion"}``, ``{"text"}``
    (SFT) or ``{"prompt", "chosen", "rejected"}`` (preference). Raises :class:`Problem`."""
    if fmt == "chat":
        if "messages" not in record:
            raise Problem("missing field 'messages'")
        return {"messages": chat_messages(record["messages"])}
    if fmt == "sharegpt":
        turns = record.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise Problem("field 'conversations' must be a non-empty list of {from, value} turns")
        messages = []
        for index, turn in enumerate(turns, start=1):
            if not isinstance(turn, dict):
                raise Problem(f"conversations turn {index} must be an object with 'from' and 'value'")
            speaker = turn.get("from")
            if speaker not in SHAREGPT_ROLES:
                raise Problem(f"conversations turn {index} has unknown 'from' {speaker!r} (expected "
                              f"{', '.join(SHAREGPT_ROLES)})")
            messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")})
        return {"messages": chat_messages(_system(record) + messages, "conversations")}
    if fmt == "alpaca":
        instruction, extra = _text(record, "instruction"), _text(record, "input", optional=True)
        request = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return {"messages": [*_system(record), {"role": "user", "content": request},
                             {"role": "assistant", "content": _text(record, "output")}]}
    if fmt == "input-output":
        return {"messages": [*_system(record), {"role": "user", "content": _text(record, "input")},
                             {"role": "assistant", "content": _text(record, "output")}]}
    prompt: Any
    chosen: Any
    rejected: Any
    if fmt == "prompt-completion":
        prompt = _text_or_chat(record, "prompt", end_with_assistant=False)
        completion = _text_or_chat(record, "completion", end_with_assistant=True)
        if isinstance(prompt, list) != isinstance(completion, list):
            raise Problem("'prompt' and 'completion' must both be strings or both be message lists")
        return {"prompt": prompt, "completion": completion}
    if fmt == "text":
        return {"text": _text(record, "text")}
    if fmt == "preference":
        prompt = _text_or_chat(record, "prompt", end_with_assistant=False)
        chosen = _text_or_chat(record, "chosen", end_with_assistant=True)
        rejected = _text_or_chat(record, "rejected", end_with_assistant=True)
        if not (isinstance(prompt, list) == isinstance(chosen, list) == isinstance(rejected, list)):
            raise Problem("'prompt', 'chosen' and 'rejected' must all be strings or all be message lists")
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if fmt == "chat-pair":
        chosen = chat_messages(record.get("chosen"), "chosen") if "chosen" in record else None
        rejected = chat_messages(record.get("rejected"), "rejected") if "rejected" in record else None
        if chosen is None or rejected is None:
            raise Problem(f"missing field '{'chosen' if chosen is None else 'rejected'}'")
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise Problem("'chosen' and 'rejected' share no prompt (their first messages differ)")
        if shared == len(chosen) or shared == len(rejected):
            raise Problem("'chosen' and 'rejected' are the same conversation (or one is a prefix of the other)")
        return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}
    raise ValueError(f"unknown format {fmt!r}")


@dataclass
class Loaded:
    """Records of one source, normalized to the recipe's schema, and what was found about them."""

    records: list[dict[str, Any]]
    where: list[str]
    source: str
    format: str
    count: int
    pii: dict[str, int] = field(default_factory=dict)  # findings by kind (pii policy other than ignore)
    first: dict[str, Any] | None = None  # the first normalized record (kept even with keep=False)

    def pii_line(self, policy: str) -> str | None:
        """The run log's PII line (None when nothing was found or the policy is ignore)."""
        if not self.pii or policy == "ignore":
            return None
        found = ", ".join(f"{n:,} {k}" for k, n in sorted(self.pii.items()))
        if policy == "redact":
            return f"data: PII redacted before training: {found}"
        return (f"data: PII found: {found} (pii: warn; forge data scan {display_name(self.source)} lists them; "
                "pii: block refuses the data, pii: redact trains on a redacted copy)")

    def __len__(self) -> int:
        return self.count

    def summary(self) -> str:
        """``1,204 records, format alpaca, from train.jsonl``."""
        return f"{self.count:,} records, format {self.format}, from {display_name(self.source)}"


def display_name(source: str) -> str:
    path = Path(source)
    return path.name if path.is_absolute() and path.exists() else source


PII_BATCH = 256  # records scanned for PII together (pii other than ignore)
_MESSAGES_ONLY = ("chat", "sharegpt", "alpaca", "input-output")  # formats that normalize to {"messages"} only


def load(source: str, task: str, fmt: str = "auto", keep: bool = True,
         progress: Callable[[int], None] | None = None, pii: str = "ignore", split: str = "train",
         subset: str | None = None) -> Loaded:
    """Read, detect (``fmt: auto``, from the first record), check and normalize every record of ``source``.

    The same code path serves the run and ``--dry-run`` (``keep=False``: records are checked and counted, not
    kept, so memory stays bounded). Problems: one DataError listing up to 20, ``file:line: ...`` each. ``pii``
    (:mod:`forge.pii`): ``warn`` counts findings, ``block`` makes each one a problem, ``redact`` replaces them.
    """
    from forge import pii as scanner

    records: list[dict[str, Any]] = []
    where: list[str] = []
    problems: list[str] = []
    found: dict[str, int] = {}
    first: dict[str, Any] | None = None
    count = 0
    chosen = None if fmt == "auto" else fmt
    # records wait here to be scanned for PII in batches (scanner.scan_records: one cheap test for many clean records)
    pending: list[dict[str, Any]] = []
    pending_places: list[str] = []

    def flush() -> bool:
        """Scan the pending records and keep them, in order; False once there are enough problems to stop."""
        nonlocal first
        if chosen in _MESSAGES_ONLY:  # {"messages": [{"role", "content"}]}: the roles are ROLES, never PII
            texts = ["\n".join([m["content"] for m in r["messages"]]) for r in pending]
            hits = scanner.scan_records(pending, texts=texts)
        else:
            hits = scanner.scan_records(pending)
        last_hit = max(hits, default=-1)
        if first is None:
            first = pending[0]
        for i, (normalized, place) in enumerate(zip(pending, pending_places, strict=True)):
            findings = hits.get(i)
            if findings:
                for field_name, finding in findings:
                    found[finding.kind] = found.get(finding.kind, 0) + 1
                    if pii == "block":
                        problems.append(f"{place}: {field_name}: {finding.kind} {finding.masked()} (pii: block)")
                if len(problems) >= MAX_PROBLEMS:
                    return False
                if pii == "redact":
                    normalized = scanner.redact_record(normalized)
                    if first is pending[i]:
                        first = normalized
            if keep:
                records.append(normalized)
                where.append(place)
            elif i >= last_hit:
                break  # nothing more to count or keep in this batch
        pending.clear()
        pending_places.clear()
        return True

    stopped = False
    for record, place in iter_source(source, split, subset):
        if chosen is None:
            chosen = detect_format(record, task)
            if chosen is None:
                raise DataError(f"{place}: expected {_EXPECTED[task]} (found fields: {', '.join(record) or 'none'})")
        count += 1
        try:
            normalized = normalize(record, chosen)
        except Problem as exc:
            if pending and not flush():  # the problems stay in file order
                stopped = True
                break
            problems.append(f"{place}: {exc}")
            if len(problems) >= MAX_PROBLEMS:
                stopped = True
                break
            continue
        if pii == "ignore":
            if first is None:
                first = normalized
            if keep:
                records.append(normalized)
                where.append(place)
        else:
            pending.append(normalized)
            pending_places.append(place)
            if len(pending) >= PII_BATCH and not flush():
                stopped = True
                break
        if progress is not None and count % 10_000 == 0:
            progress(count)
    if pending and not stopped:
        flush()
    if problems:
        raise DataError(problems[0], problems)
    assert chosen is not None  # iter_source raises on a source without records
    return Loaded(records, where, source, chosen, count, found, first)


def check_source(source: str, task: str, fmt: str, log: Callable[[str], None], pii: str = "ignore") -> Loaded:
    """What ``forge run --dry-run`` does with a recipe's data: :func:`load` without keeping the records (bounded
    memory), a progress line every few seconds on a large source, and the summary line the run prints."""
    import time

    started = last = time.monotonic()

    def progress(count: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - started > 3 and now - last > 3:
            last = now
            log(f"data: checked {count:,} records of {display_name(source)} ({now - started:.0f} s)")

    loaded = load(source, task, fmt, keep=False, progress=progress, pii=pii)
    log(f"data: {loaded.summary()}; checked")
    line = loaded.pii_line(pii)
    if line:
        log(line)
    return loaded


def write_redacted(records: list[dict[str, Any]], sources: list[dict[str, Any]], directory: Path) -> dict[str, Any]:
    """Write the (redacted) records a run trains on as ``DIRECTORY/redacted.jsonl``; return what the manifest
    records about it: path, sha256, records, and its parent (the source and its sha256; for a mixture, each)."""
    import hashlib

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "redacted.jsonl"
    digest = hashlib.sha256()
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            line = json.dumps(record, ensure_ascii=False) + "\n"
            digest.update(line.encode("utf-8"))
            handle.write(line)
    parents = [{k: s[k] for k in ("source", "sha256") if k in s} for s in sources]
    parent = parents[0] if len(parents) == 1 else {"source": f"mixture of {len(parents)} sources", "sources": parents}
    return {"path": str(path.resolve()), "sha256": digest.hexdigest(), "records": len(records), "parent": parent}


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sft(kind: str) -> Check:
    """A :data:`Check` for records of one SFT format (``messages`` is the chat format's older name)."""
    fmt = "chat" if kind == "messages" else kind

    def check(record: dict[str, Any]) -> str | None:
        try:
            normalize(record, fmt)
        except Problem as exc:
            return str(exc)
        return None

    return check


def check_fields(*fields: str) -> Check:
    def check(record: dict[str, Any]) -> str | None:
        for name in fields:
            problem = text_or_messages(record, name)
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


# -- mixtures ------------------------------------------------------------------------------------------------------
@dataclass
class Mixture:
    """The records a run trains on, drawn from one source or several (``data:`` as a list), and per source what
    was read and used (the manifest's ``data_sources``)."""

    records: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    loaded: list[Loaded]

    @property
    def format(self) -> str:
        formats = {s["format"] for s in self.sources}
        return formats.pop() if len(formats) == 1 else "mixed"

    def table(self) -> list[str]:
        """The run log's mixture table, one line per source."""
        width = max(len(s["name"]) for s in self.sources)
        lines = [f"data: mixture of {len(self.sources)} sources"]
        lines.append(f"  {'source':<{width}}  {'format':<17} {'records':>9} {'used':>9}  share")
        total = sum(s["used"] for s in self.sources) or 1
        for s in self.sources:
            lines.append(f"  {s['name']:<{width}}  {s['format']:<17} {s['records']:>9,} {s['used']:>9,}  "
                         f"{100 * s['used'] / total:.0f}%")
        return lines


def _specs(data: Any, fmt: str) -> list[dict[str, Any]]:
    if isinstance(data, (str, Path)):
        return [{"path": str(data), "split": "train", "subset": None, "weight": None, "samples": None, "format": fmt}]
    specs = [item.model_dump() if hasattr(item, "model_dump") else dict(item) for item in data]
    for spec in specs:
        spec["path"] = str(spec["path"])
        if spec.get("format", "auto") == "auto":
            spec["format"] = fmt
    return specs


def _take(records: list[Any], n: int, rng: Any) -> list[Any]:
    """``n`` records: a random subset when ``n`` is at most their number, else whole shuffled passes and a rest."""
    out: list[Any] = []
    while n - len(out) >= len(records):
        out.extend(rng.sample(records, len(records)))
    return out + rng.sample(records, n - len(out))


def load_mixture(data: Any, task: str, fmt: str = "auto", pii: str = "ignore", seed: int = 0, keep: bool = True,
                 progress: Callable[[int], None] | None = None) -> Mixture:
    """One source (a path or Hub name) or a list of :class:`forge.config.DataSpec`: every source read and checked
    (:func:`load`), then ``samples: N`` takes N records of its source, ``weight`` shares the weighted sources'
    total records in proportion, and a source with neither is used whole. Sampling is seeded."""
    import random

    specs = _specs(data, fmt)
    loaded = [load(s["path"], task, s["format"], keep=keep, progress=progress, pii=pii, split=s.get("split") or "train",
                   subset=s.get("subset")) for s in specs]
    weighted = [i for i, s in enumerate(specs) if s.get("weight") is not None]
    total_weight = sum(specs[i]["weight"] for i in weighted)
    pool = sum(loaded[i].count for i in weighted)
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    sources = []
    for spec, source in zip(specs, loaded, strict=True):
        if spec.get("samples"):
            used = int(spec["samples"])
        elif spec.get("weight") is not None:
            used = round(pool * spec["weight"] / total_weight)
        else:
            used = source.count
        if keep:
            records.extend(_take(source.records, used, rng) if used != source.count else source.records)
        local = Path(spec["path"])
        entry: dict[str, Any] = {"source": spec["path"], "name": display_name(spec["path"]), "format": source.format,
                                 "records": source.count, "used": used}
        if local.is_file():
            entry["sha256"] = file_sha256(local)
        else:
            entry.update(split=spec.get("split") or "train", subset=spec.get("subset"))
        if spec.get("weight") is not None:
            entry["weight"] = spec["weight"]
        if source.pii:
            entry["pii"] = source.pii
        sources.append(entry)
    if task == "sft" and len(specs) > 1:
        kinds = {_shape(s.first) for s in loaded if s.first is not None}
        if len(kinds) > 1:
            names = ", ".join(f"{s['name']} ({s['format']})" for s in sources)
            raise DataError(f"data: these sources cannot be mixed in one run ({names}): chat-like, prompt/completion "
                            "strings and plain text train differently; convert them to one kind")
    return Mixture(records, sources, loaded)


def _shape(record: dict[str, Any]) -> str:
    if "text" in record:
        return "text"
    if "messages" in record or isinstance(record.get("prompt"), list):
        return "conversational"
    return "strings"


def check_mixture(data: Any, task: str, fmt: str, log: Callable[[str], None], pii: str = "ignore",
                  seed: int = 0) -> Mixture:
    """``--dry-run`` for one source or a mixture: :func:`check_source`'s lines, and the mixture table."""
    if isinstance(data, (str, Path)):
        loaded = check_source(str(data), task, fmt, log, pii=pii)
        return Mixture([], [{"source": str(data), "name": display_name(str(data)), "format": loaded.format,
                             "records": loaded.count, "used": loaded.count}], [loaded])
    mixture = load_mixture(data, task, fmt, pii=pii, seed=seed, keep=False)
    for line in mixture.table():
        log(line)
    for source in mixture.loaded:
        pii_line = source.pii_line(pii)
        if pii_line:
            log(pii_line)
    return mixture
