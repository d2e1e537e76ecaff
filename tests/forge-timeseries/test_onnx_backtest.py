"""``forge.load_predictor`` for forecasters, and the ``backtest`` suite on an ONNX export (same forecasts as torch)."""

from __future__ import annotations

import pytest
from conftest import LSTM_FAST, run_forge
from forge import Artifact, DataError, EvalRequest, load_predictor
from series_files import write_series


@pytest.fixture(scope="module")
def lstm_and_onnx(tmp_path_factory):
    work = tmp_path_factory.mktemp("onnx-backtest")
    write_series(work / "s.csv")
    run_forge(work, "run", "--recipe", "lstm-forecast", "--data", "s.csv", *LSTM_FAST, "-o", "lstm")
    run_forge(work, "export", "lstm", "--format", "onnx")
    return work, Artifact.load(work / "lstm"), Artifact.load(work / "lstm" / "exports" / "onnx")


def test_forecast_predictor_torch_and_onnx(lstm_and_onnx):
    _, torch_artifact, onnx_artifact = lstm_and_onnx
    assert onnx_artifact.kind == "onnx-forecaster"
    rows = [{}, {"horizon": 3, "level": [90]}]
    with load_predictor(torch_artifact) as a, load_predictor(onnx_artifact) as b:
        one, two = a.predict(rows), b.predict(rows)
        with pytest.raises(DataError, match=r"rows.0.horizon: at most 6"):
            a.predict([{"horizon": 60}])
        with pytest.raises(DataError, match=r"rows.1.history.0.value"):
            b.predict([{}, {"history": [{"timestamp": "2001-01-01", "value": "x"}]}])
    assert len(one[0]["forecast"]) == 6 and len(one[1]["forecast"]) == 3 and one[1]["levels"] == [90.0]
    assert set(one[1]["forecast"][0]) == {"timestamp", "value", "lo_90", "hi_90"}
    for x, y in zip(one, two, strict=True):
        assert [p["timestamp"] for p in x["forecast"]] == [p["timestamp"] for p in y["forecast"]]
        assert [p["value"] for p in x["forecast"]] == pytest.approx([p["value"] for p in y["forecast"]], rel=1e-4)


def test_backtest_on_the_onnx_export(lstm_and_onnx, tmp_path):
    from forge.plugins import load_plugins

    work, torch_artifact, onnx_artifact = lstm_and_onnx
    evaluator = load_plugins().get("evaluators", "backtest").item
    results = []
    for artifact in (torch_artifact, onnx_artifact):
        request = EvalRequest(data=work / "s.csv", options={"n_windows": 2, "baselines": "AutoETS"},
                              output_dir=tmp_path / artifact.kind, seed=0, log=lambda message: None)
        results.append(evaluator.run(artifact, request))
    torch_result, onnx_result = results
    assert len(onnx_result.records) == 2 and onnx_result.plots[0].read_bytes()[:4] == b"\x89PNG"
    for key in ("mae", "rmse", "smape", "mase"):
        assert onnx_result.metrics[key] == pytest.approx(torch_result.metrics[key], rel=1e-4), key
