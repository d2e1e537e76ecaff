"""Reading and checking time series: a time column, a target column, optional numeric covariates, and optionally an
id column naming the series of each row (a panel: sales per store, load per feeder).

Problems name the file, the line and the series: ``sales.csv:14: value 'n/a' in column 'sales' is not a number``,
``sales.csv:9: duplicate timestamp 2000-02-01 in series 'store-2' (first on line 5)``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from forge.errors import DataError

FillPolicy = Literal["error", "interpolate", "ffill"]
SEASON_BY_FREQ = {"h": 24, "D": 7, "B": 5, "W": 52, "MS": 12, "ME": 12, "QS": 4, "QE": 4, "YS": 1, "YE": 1}


@dataclass
class Series:
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (n, 1 + covariates): target first
    columns: list[str]
    freq: str
    filled: int = 0
    id: str | None = None  # the value of the id column; None for a file holding one series
    lines: list[int] = field(default_factory=list)  # source line (CSV) or row (Parquet) of each original point
    source: str = ""  # the file, for messages

    @property
    def name(self) -> str:
        """How messages name this series: ``series 'store-2' (lines 5-40)``, or nothing for a single series."""
        if self.id is None:
            return ""
        span = f"lines {self.lines[0]}-{self.lines[-1]}" if len(self.lines) > 1 else f"line {self.lines[0]}"
        return f"series {self.id!r} ({span})"

    def where(self) -> str:
        """``sales.csv: series 'b' (lines 5-40)`` or ``sales.csv``: the prefix of a message about the whole series."""
        return f"{self.source}: {self.name}" if self.id is not None else self.source


def _read_arrow(path: Path) -> pd.DataFrame:
    """An Arrow IPC file (Feather v2) or stream (what ``datasets`` saves)."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_file(source).read_all().to_pandas()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all().to_pandas()
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: unreadable Arrow ({exc})") from None


def _read_table(path: Path) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    if path.suffix.lower() in (".parquet", ".arrow"):
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else _read_arrow(path)
        return frame.to_dict("records"), list(range(1, len(frame) + 1)), [str(c) for c in frame.columns]
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            rows, lines = [], []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
            return rows, lines, list(reader.fieldnames or [])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason})") from None


def read_series(path: Path, time_column: str, target: str, covariates: list[str],
                fill: FillPolicy = "error") -> Series:
    """Read, parse and check one regular series; raise DataError naming file and line on the first problem."""
    return read_panel(path, time_column, target, covariates, None, fill)[0]


def read_panel(path: Path, time_column: str, target: str, covariates: list[str], id_column: str | None,
               fill: FillPolicy = "error") -> list[Series]:
    """Read a file of one series (``id_column`` None) or of many (rows of a series in time order, series may be
    interleaved); every series on the same regular grid. Raise DataError naming file, line and series."""
    rows, lines, header = _read_table(path)
    parquet = path.suffix.lower() in (".parquet", ".arrow")
    wanted = [time_column, target, *covariates] + ([id_column] if id_column else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise DataError(f"{path}: missing column{plural} {', '.join(repr(m) for m in missing)} "
                        f"(columns: {', '.join(header)})")
    if not rows:
        raise DataError(f"{path}: no rows")

    def label(line: int) -> str:
        return f"{path}: row {line}" if parquet else f"{path}:{line}"

    groups: dict[str | None, tuple[list[pd.Timestamp], list[list[float]], list[int]]] = {}
    for row, line in zip(rows, lines, strict=True):
        key: str | None = None
        if id_column:
            raw_id = row[id_column]
            if raw_id is None or (isinstance(raw_id, float) and np.isnan(raw_id)) or str(raw_id).strip() == "":
                raise DataError(f"{label(line)}: empty series id in column '{id_column}'")
            key = str(raw_id)
        stamps, values, where = groups.setdefault(key, ([], [], []))
        try:
            stamp = pd.Timestamp(row[time_column])
        except (ValueError, TypeError):
            raise DataError(f"{label(line)}: timestamp {row[time_column]!r} in column '{time_column}' is not a "
                            "date/time") from None
        if pd.isna(stamp):
            raise DataError(f"{label(line)}: empty timestamp in column '{time_column}'")
        record = []
        for column in [target, *covariates]:
            raw = row[column]
            try:
                number = float(raw)
            except (ValueError, TypeError):
                raise DataError(f"{label(line)}: value {raw!r} in column '{column}' is not a number"
                                + _in_series(key)) from None
            if not np.isfinite(number):
                raise DataError(f"{label(line)}: value {raw!r} in column '{column}' is not a finite number"
                                + _in_series(key))
            record.append(number)
        stamps.append(stamp)
        values.append(record)
        where.append(line)

    if id_column and all(len(g[0]) == 1 for g in groups.values()) and len(groups) > 1:
        first = next(iter(groups))
        raise DataError(f"{label(groups[first][2][0])}: series {first!r} has a single point, and so do all "
                        f"{len(groups)} series: is '{id_column}' the column that names the series?")
    result = []
    for key, (stamps, values, where) in groups.items():
        result.append(_regular_series(path, parquet, key, stamps, values, where, [target, *covariates], fill))
    if id_column:
        freqs = {s.freq for s in result}
        if len(freqs) > 1:
            common = max(freqs, key=lambda f: sum(s.freq == f for s in result))
            odd = next(s for s in result if s.freq != common)
            raise DataError(f"{odd.where()}: frequency {odd.freq}, but the other series are {common}; "
                            "one model needs one frequency")
    return result


def _in_series(key: str | None) -> str:
    return f" (series {key!r})" if key is not None else ""


def _regular_series(path: Path, parquet: bool, key: str | None, stamps: list[pd.Timestamp],
                    values: list[list[float]], lines: list[int], columns: list[str], fill: FillPolicy) -> Series:
    def label(line: int) -> str:
        return f"{path}: row {line}" if parquet else f"{path}:{line}"

    for i in range(1, len(stamps)):
        if stamps[i] == stamps[i - 1]:
            shown = stamps[i].date() if stamps[i] == stamps[i].normalize() else stamps[i]
            first = f" in series {key!r} (first on {'row' if parquet else 'line'} {lines[i - 1]})" \
                if key is not None else ""
            raise DataError(f"{label(lines[i])}: duplicate timestamp {shown}{first}")
        if stamps[i] < stamps[i - 1]:
            raise DataError(f"{label(lines[i])}: timestamps are not sorted ({stamps[i]} after {stamps[i - 1]})"
                            + _in_series(key))
    if key is not None and len(stamps) == 1:
        raise DataError(f"{label(lines[0])}: series {key!r} has a single point")
    index = pd.DatetimeIndex(stamps)
    where = f"{path}: series {key!r}" if key is not None else f"{path}"
    freq = infer_frequency(index, where)
    expected = pd.date_range(index[0], index[-1], freq=freq)
    array = np.asarray(values, dtype=np.float64)
    filled = 0
    if len(expected) != len(index) or not (expected == index).all():
        gaps = expected.difference(index)
        extra = index.difference(expected)
        if len(extra):
            position = index.get_loc(extra[0])
            raise DataError(f"{label(lines[position])}: timestamp {extra[0]} is off the {freq} grid"
                            + _in_series(key))
        if fill == "error":
            raise DataError(f"{where}: {len(gaps)} missing timestamp(s) at frequency {freq}, first {gaps[0]}; "
                            "set fill: interpolate or fill: ffill to fill them")
        frame = pd.DataFrame(array, index=index).reindex(expected)
        frame = frame.interpolate(method="time") if fill == "interpolate" else frame.ffill()
        filled = len(gaps)
        array, index = frame.to_numpy(), expected
    return Series(timestamps=index, values=array, columns=columns, freq=freq, filled=filled, id=key, lines=lines,
                  source=str(path))


def infer_frequency(index: pd.DatetimeIndex, path: Path | str = "series") -> str:
    if len(index) < 3:
        raise DataError(f"{path}: a series needs at least 3 timestamps to infer its frequency")
    inferred = pd.infer_freq(index[: min(len(index), 50)])
    if inferred is None:
        # gaps hide the frequency: take the most common step
        steps = pd.Series(index[1:] - index[:-1]).mode()[0]
        days = steps / pd.Timedelta(days=1)
        if 28 <= days <= 31:
            inferred = "MS" if (index.day == 1).all() else "ME"
        elif 89 <= days <= 92:
            inferred = "QS" if (index.day == 1).all() else "QE"
        elif 365 <= days <= 366:
            inferred = "YS" if (index.day == 1).all() else "YE"
        else:
            inferred = pd.tseries.frequencies.to_offset(steps).freqstr
    return str(inferred)


def season_length(freq: str) -> int:
    base = freq.split("-")[0].lstrip("0123456789") or freq
    return SEASON_BY_FREQ.get(base, 1)


def future_timestamps(last: pd.Timestamp, freq: str, steps: int) -> pd.DatetimeIndex:
    return pd.date_range(last, periods=steps + 1, freq=freq)[1:]
