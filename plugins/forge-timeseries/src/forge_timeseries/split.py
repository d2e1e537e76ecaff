"""The chronological split both forecasting recipes use, per series: train | validation | test, never shuffled
across time. With many series each is split at its own end (its last ``test_size`` points are its test part).

    origins = plan_splits(panel, horizon=12, val_size=12, test_size=12, season=12, window=24)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from forge.errors import DataError

from forge_timeseries.metrics import mase_scale
from forge_timeseries.series import Series


@dataclass
class SeriesSplit:
    series: Series
    val_start: int
    test_start: int
    train_origins: list[int]  # a forecast origin t sees values[:t] and predicts values[t:t + horizon]
    val_origins: list[int]
    test_origins: list[int]
    scale: float  # MASE denominator: seasonal-naive in-sample error on the training part

    @property
    def n(self) -> int:
        return len(self.series.values)

    @property
    def key(self) -> str:
        return self.series.id if self.series.id is not None else ""

    def test_actuals(self, horizon: int) -> np.ndarray:
        target = self.series.values[:, 0]
        return np.stack([target[t:t + horizon] for t in self.test_origins])


def plan_splits(panel: list[Series], horizon: int, val_size: int | None, test_size: int | None, season: int,
                window: int | None = None, min_train: int | None = None) -> list[SeriesSplit]:
    """Split every series; raise DataError naming the series that is too short. ``window``: the model reads that
    many past points (LSTM); ``min_train``: the fewest training points the models need (statistical models)."""
    val_size, test_size = val_size or horizon, test_size or horizon
    if test_size < horizon:
        raise DataError(f"test_size {test_size} is shorter than horizon {horizon}: a test forecast needs "
                        f"{horizon} actual values")
    splits = []
    for series in panel:
        n = len(series.values)
        test_start, val_start = n - test_size, n - test_size - val_size
        if window is not None:
            needed = window + horizon + val_size + test_size
            if n < needed:
                raise DataError(f"{series.where()}: {n} points is shorter than window + horizon + validation + "
                                f"test ({window} + {horizon} + {val_size} + {test_size} = {needed})")
        if min_train is not None and val_start < min_train:
            raise DataError(f"{series.where()}: {n} points leave {max(val_start, 0)} for training after validation "
                            f"+ test ({val_size} + {test_size}); the statistical models need at least {min_train} "
                            f"(two seasons of {season})")
        first = window if window is not None else val_start
        train_origins = list(range(first, val_start - horizon + 1)) if window is not None else []
        val_origins = list(range(max(first, val_start - horizon + 1), test_start - horizon + 1)) \
            if window is not None else list(range(val_start, test_start - horizon + 1))
        if not val_origins:  # validation shorter than the horizon: one forecast, scored on its first steps
            val_origins = [val_start]
        splits.append(SeriesSplit(series=series, val_start=val_start, test_start=test_start,
                                  train_origins=train_origins, val_origins=val_origins,
                                  test_origins=list(range(test_start, n - horizon + 1)),
                                  scale=mase_scale(series.values[:val_start, 0], season)))
    return splits
