"""Fast unit tests of the forecasting pieces: conformal calibration, per-series scaling, fitted-state storage,
panel reading."""

from __future__ import annotations

import math

import numpy as np
import pytest
from forge import DataError
from series_files import write_panel


def test_conformal_quantile_is_the_finite_sample_rank():
    from forge_timeseries.spec import conformal_quantile

    scores = list(range(1, 20))  # 19 scores
    assert conformal_quantile(scores, 95) == 19  # ⌈20 · 0.95⌉ = 19th
    assert conformal_quantile(scores, 80) == 16
    assert conformal_quantile(scores[:5], 95) == 5  # too few for 95%: the largest


def test_nondecreasing_pools_adjacent_violators():
    from forge_timeseries.spec import nondecreasing

    fitted = nondecreasing(np.array([3.0, 1.0, 2.0, 5.0, 4.0]), np.ones(5))
    assert fitted.tolist() == [2.0, 2.0, 2.0, 4.5, 4.5]


def test_interval_calibration_covers_fresh_errors():
    """Errors that grow with the step: calibrated on one sample, the 80/95% widths cover a fresh one."""
    from forge_timeseries.spec import IntervalCalibration

    rng = np.random.default_rng(0)
    spread = np.sqrt(np.arange(1, 7))
    calibration = IntervalCalibration.fit(rng.normal(size=(400, 6)) * spread, np.ones((400, 6), dtype=bool))
    assert np.all(np.diff(calibration.step_scale) >= 0)
    fresh = rng.normal(size=(4000, 6)) * spread
    for level in (80, 95):
        covered = np.abs(fresh) <= calibration.widths(level, 6)
        assert abs(covered.mean() - level / 100) < 0.02, level
        assert np.all(np.abs(covered.mean(axis=0) - level / 100) < 0.05)  # per step too
    masked = IntervalCalibration.fit(np.ones((3, 4)), np.array([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]], bool))
    assert len(masked.scores) == 6 and masked.step_scale[0] == masked.step_scale[1]  # no error at step 1: borrowed


def test_window_transform_scales_each_window_by_its_series():
    from forge_timeseries.spec import WindowTransform

    rng = np.random.default_rng(1)
    windows = np.abs(rng.normal(10, 2, size=(3, 12, 2))) + 1
    scales = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    together = WindowTransform(log=True, scales=scales)
    predicted = rng.normal(size=(3, 4))
    for i in range(3):
        alone = WindowTransform(log=True, scales=scales[i].tolist())
        assert np.allclose(together.inputs(windows)[i], alone.inputs(windows[i:i + 1])[0])
        assert np.allclose(together.outputs(windows, predicted)[i], alone.outputs(windows[i:i + 1], predicted[i:i + 1]))
        future = np.abs(rng.normal(10, 2, size=(1, 4)))
        assert np.allclose(WindowTransform(True, scales).targets(windows[i:i + 1].repeat(3, 0), future.repeat(3, 0))[i],
                           alone.targets(windows[i:i + 1], future)[0])


def test_fitted_state_round_trips_through_json_and_safetensors(tmp_path):
    from forge_timeseries.statistical import (
        MODELS,
        SeriesTask,
        StatForecasterSpec,
        fit_and_forecast,
        forecast_model,
        load_stat_forecaster,
        save_stat_forecaster,
    )

    y = np.array([100 + 10 * math.sin(2 * math.pi * i / 12) + 0.5 * i + (i % 5) for i in range(60)], dtype=float)
    fitted = fit_and_forecast(SeriesTask(y, 60, [], 6, 12, MODELS, keep_params=True))
    assert not fitted.failures and set(fitted.params) == set(MODELS)
    spec = StatForecasterSpec(models=list(MODELS), primary="AutoETS", season_length=12, freq="MS", horizon=6,
                              columns=["value"], time_column="date", id_column=None, levels=[80.0, 95.0], series=[])
    save_stat_forecaster(tmp_path, spec, [(None, fitted.params)])
    assert not any(b"pickle" in p.read_bytes()[:200] for p in tmp_path.iterdir())
    loaded_spec, models = load_stat_forecaster(tmp_path)
    assert loaded_spec.models == list(MODELS)
    original = fit_and_forecast(SeriesTask(y, 60, [60, 54], 6, 12, MODELS))
    for name in MODELS:
        mean, lower, _ = forecast_model(models[None][name], None, 6, (95.0,))
        assert np.allclose(mean, original.mean[name][0]), name
        assert np.allclose(lower[95.0], original.lower[name][95.0][0]), name
        forward, _, _ = forecast_model(models[None][name], y[:54], 6, ())
        assert np.isfinite(forward).all() and forward.shape == (6,)


def test_encode_state_refuses_what_it_cannot_store():
    from forge_timeseries.statistical import decode_state, encode_state

    arrays: dict = {}
    tree = encode_state({"a": (1, np.float64(2.5)), "b": np.arange(3), "c": float("nan"), "d": None}, "m", arrays)
    back = decode_state(tree, arrays)
    assert back["a"] == (1, 2.5) and back["b"].tolist() == [0, 1, 2] and math.isnan(back["c"]) and back["d"] is None
    with pytest.raises(TypeError, match="m/x: cannot store a set"):
        encode_state({"x": {1}}, "m", {})
    with pytest.raises(TypeError, match="object array"):
        encode_state(np.array([None]), "m", {})


def test_a_model_that_fails_on_a_series_falls_back_to_seasonal_naive(monkeypatch):
    from forge_timeseries import statistical

    real = statistical.build_model

    def flaky(name, season):
        if name == "AutoTheta":
            raise RuntimeError("singular matrix")
        return real(name, season)

    monkeypatch.setattr(statistical, "build_model", flaky)
    y = np.array([10 + (i % 12) + 0.1 * i for i in range(48)], dtype=float)
    result = statistical.fit_and_forecast(statistical.SeriesTask(y, 42, [42], 6, 12, ("AutoTheta", "SeasonalNaive")))
    assert result.failures == {"AutoTheta": "RuntimeError: singular matrix"}
    assert np.allclose(result.mean["AutoTheta"], result.mean["SeasonalNaive"])


def test_model_metric_names():
    from forge_timeseries.metrics import model_key

    assert [model_key(m) for m in ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive", "LSTM")] == \
        ["auto_ets", "auto_arima", "auto_theta", "seasonal_naive", "lstm"]


def test_read_panel_interleaved_rows_and_errors(tmp_path):
    from forge_timeseries.series import read_panel

    rows = [f"{s},2020-{m:02d}-01,{m * (1 + i)}" for m in range(1, 7) for i, s in enumerate(["a", "b"])]
    panel = read_panel(write_panel(tmp_path / "p.csv", rows), "date", "value", [], "store")
    assert [s.id for s in panel] == ["a", "b"] and panel[1].values[:, 0].tolist() == [2, 4, 6, 8, 10, 12]
    assert panel[1].lines == [3, 5, 7, 9, 11, 13] and panel[1].name == "series 'b' (lines 3-13)"
    rows[5], rows[7] = rows[7], rows[5]  # b: March after April
    with pytest.raises(DataError, match=r"p.csv:9: timestamps are not sorted \(.*\) \(series 'b'\)"):
        read_panel(write_panel(tmp_path / "p.csv", rows), "date", "value", [], "store")
    weekly = [f"w,{d.date()},1" for d in __import__("pandas").date_range("2020-01-05", periods=8, freq="W-SUN")]
    monthly = [f"m{i},2020-{k:02d}-01,1" for i in range(2) for k in range(1, 9)]
    with pytest.raises(DataError, match=r"series 'w' \(lines 18-25\): frequency W-SUN, but the other series are MS"):
        read_panel(write_panel(tmp_path / "p.csv", monthly + weekly), "date", "value", [], "store")
    with pytest.raises(DataError, match=r"p.csv:3: empty series id in column 'store'"):
        read_panel(write_panel(tmp_path / "p.csv", ["a,2020-01-01,1", ",2020-02-01,2"]), "date", "value", [],
                   "store")


def test_series_read_from_arrow_files_like_parquet(tmp_path):
    """Arrow IPC files and streams are read wherever a table is (issue 10)."""
    import pyarrow as pa
    from forge.errors import DataError
    from forge_timeseries.series import read_series

    table = pa.Table.from_pylist([{"date": f"2020-{m:02d}-01", "value": float(m)} for m in range(1, 13)])
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    for name in ("f.arrow", "s.arrow"):
        series = read_series(tmp_path / name, "date", "value", [])
        assert len(series.values) == 12
    (tmp_path / "bad.arrow").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"bad\.arrow: unreadable Arrow"):
        read_series(tmp_path / "bad.arrow", "date", "value", [])
