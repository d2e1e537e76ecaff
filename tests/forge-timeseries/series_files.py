"""Series files for the forecasting tests: one series, or a panel of many with an id column (seeded, tiny)."""

from __future__ import annotations

import math
from pathlib import Path


def write_series(path: Path, n: int = 80, start: str = "2000-01-01", freq: str = "MS", rows: list[str] | None = None,
                 header: str = "date,value") -> Path:
    import pandas as pd

    if rows is None:  # trend + season + a little noise (no model should be exact)
        import numpy as np

        noise = np.random.default_rng(0).normal(0, 1.5, n)
        stamps = pd.date_range(start, periods=n, freq=freq)
        rows = [f"{t.date()},{100 + 10 * math.sin(2 * math.pi * i / 12) + i + noise[i]:.3f}"
                for i, t in enumerate(stamps)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def panel_rows(n_series: int = 24, n: int = 60, seed: int = 0, start: str = "2015-01-01") -> list[str]:
    """Monthly series with their own level, trend, seasonal amplitude and AR(1) noise; lengths n, n-4, n-8."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_series):
        length = n - (s % 3) * 4
        level, phi = rng.uniform(20, 500), rng.uniform(0.2, 0.7)
        trend, amplitude, noise = rng.uniform(-0.002, 0.01) * level, rng.uniform(0.05, 0.3) * level, \
            rng.uniform(0.02, 0.08) * level
        error = 0.0
        for i, stamp in enumerate(pd.date_range(start, periods=length, freq="MS")):
            error = phi * error + rng.normal(0, noise)
            value = level + trend * i + amplitude * math.sin(2 * math.pi * i / 12) + error
            rows.append(f"s{s:02d},{stamp.date()},{max(value, 1.0):.3f}")
    return rows


def write_panel(path: Path, rows: list[str] | None = None, **kw: int) -> Path:
    path.write_text("store,date,value\n" + "\n".join(rows if rows is not None else panel_rows(**kw)) + "\n")
    return path
