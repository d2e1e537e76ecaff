"""Reading and checking a time series: a time column, a target column, optional numeric covariates.

Problems name the file and line: ``sales.csv:14: value 'n/a' in column 'sales' is not a number``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


def _read_table(path: Path) -> tuple[list[dict[str, str]], list[int], list[str]]:
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
        return [{k: v for k, v in r.items()} for r in frame.to_dict("records")], list(range(1, len(frame) + 1)), \
            list(frame.columns)
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
    """Read, parse and check a regular series; raise DataError naming file and line on the first problem."""
    rows, lines, header = _read_table(path)
    where = "line" if path.suffix.lower() != ".parquet" else "row"
    missing = [c for c in [time_column, target, *covariates] if c not in header]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise DataError(f"{path}: missing column{plural} {', '.join(repr(m) for m in missing)} "
                        f"(columns: {', '.join(header)})")
    if not rows:
        raise DataError(f"{path}: no rows")
    stamps, values = [], []
    for row, line in zip(rows, lines, strict=True):
        label = f"{path}:{line}" if where == "line" else f"{path}: row {line}"
        try:
            stamps.append(pd.Timestamp(row[time_column]))
        except (ValueError, TypeError):
            raise DataError(f"{label}: timestamp {row[time_column]!r} in column '{time_column}' is not a date/time") \
                from None
        if pd.isna(stamps[-1]):
            raise DataError(f"{label}: empty timestamp in column '{time_column}'")
        record = []
        for column in [target, *covariates]:
            raw = row[column]
            try:
                number = float(raw)
            except (ValueError, TypeError):
                raise DataError(f"{label}: value {raw!r} in column '{column}' is not a number") from None
            if not np.isfinite(number):
                raise DataError(f"{label}: value {raw!r} in column '{column}' is not a finite number")
            record.append(number)
        values.append(record)
    for i in range(1, len(stamps)):
        label = f"{path}:{lines[i]}" if where == "line" else f"{path}: row {lines[i]}"
        if stamps[i] == stamps[i - 1]:
            shown = stamps[i].date() if stamps[i] == stamps[i].normalize() else stamps[i]
            raise DataError(f"{label}: duplicate timestamp {shown}")
        if stamps[i] < stamps[i - 1]:
            raise DataError(f"{label}: timestamps are not sorted ({stamps[i]} after {stamps[i - 1]})")
    index = pd.DatetimeIndex(stamps)
    freq = infer_frequency(index, path)
    expected = pd.date_range(index[0], index[-1], freq=freq)
    array = np.asarray(values, dtype=np.float64)
    filled = 0
    if len(expected) != len(index) or not (expected == index).all():
        gaps = expected.difference(index)
        extra = index.difference(expected)
        if len(extra):
            position = index.get_loc(extra[0])
            raise DataError(f"{path}:{lines[position]}: timestamp {extra[0]} is off the {freq} grid")
        if fill == "error":
            raise DataError(f"{path}: {len(gaps)} missing timestamp(s) at frequency {freq}, first {gaps[0]}; "
                            "set fill: interpolate or fill: ffill to fill them")
        frame = pd.DataFrame(array, index=index).reindex(expected)
        frame = frame.interpolate(method="time") if fill == "interpolate" else frame.ffill()
        filled = len(gaps)
        array, index = frame.to_numpy(), expected
    return Series(timestamps=index, values=array, columns=[target, *covariates], freq=freq, filled=filled)


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
