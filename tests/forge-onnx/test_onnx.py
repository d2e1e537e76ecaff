"""ONNX export (fp32, int8) with parity checks, a plain InferenceSession, and the ONNX Runtime server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from support import Server, assert_held, burst

sys.path.insert(0, str(Path(__file__).parents[1] / "forge-hf"))
sys.path.insert(0, str(Path(__file__).parents[1] / "forge-timeseries"))
from series_files import write_panel, write_series
from test_classify import FAST as CLASSIFY_FAST
from test_classify import write_reviews
from test_forecast import FAST as FORECAST_FAST


def manifest(path: Path) -> dict:
    return json.loads((path / "forge.json").read_text())


@pytest.fixture
def classifier_run(forge_cli, tiny_bert):
    write_reviews(forge_cli.cwd / "r.csv")
    forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", *CLASSIFY_FAST,
              "--set", "num_train_epochs=3", "-o", "run", check=True)
    return forge_cli.cwd / "run"


def test_classifier_fp32_and_int8_export_and_server(forge_cli, classifier_run):
    forge_cli("export", classifier_run, "--format", "onnx", check=True, timeout=300)
    forge_cli("export", classifier_run, "--format", "onnx", "--quantize", "int8", check=True, timeout=300)
    fp32, int8 = classifier_run / "exports" / "onnx", classifier_run / "exports" / "onnx-int8"
    m32, m8 = manifest(fp32), manifest(int8)
    assert m32["kind"] == m8["kind"] == "onnx-sequence-classifier"
    assert m32["parity"]["fp32_max_abs_diff"] < 1e-4 and m32["quantization"] == "fp32"
    assert m8["quantization"] == "int8" and m8["parity"]["accuracy_change"] >= -0.02
    assert m8["parity"]["heldout_records"] > 0 and "int8_max_abs_diff" in m8["parity"]
    import onnxruntime as ort
    from transformers import AutoTokenizer

    session = ort.InferenceSession(str(fp32 / "model.onnx"))  # a plain session, dynamic batch and sequence
    tokenizer = AutoTokenizer.from_pretrained(fp32)
    for texts in (["good movie"], ["good movie", "an awful awful film that i hate"]):
        encoded = tokenizer(texts, padding=True, return_tensors="np")
        logits = session.run(None, {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()})[0]
        assert logits.shape == (len(texts), 2)
    with Server(forge_cli, classifier_run / "artifact") as torch_server, Server(forge_cli, fp32) as onnx_server:
        body = {"texts": ["good movie", "awful film", "i love it"]}
        a = httpx.post(f"{torch_server.url}/predict/batch", json=body).json()["results"]
        b = httpx.post(f"{onnx_server.url}/predict/batch", json=body).json()["results"]
        assert [x["label"] for x in a] == [x["label"] for x in b]
        assert [x["confidence"] for x in a] == pytest.approx([x["confidence"] for x in b], abs=1e-4)
        bad = httpx.post(f"{onnx_server.url}/predict", json={"text": ""})
        assert bad.status_code == 422 and bad.json()["error"]["message"] == "text: must not be empty"
        load = burst(onnx_server.url, "/predict", [{"text": "good movie"}, {"text": "an awful awful film"}],
                     bad=[{"text": ""}, {"text": 42}, '{"text": "a\\ud800b"}'])  # issue 17: 64 clients, 2xx/4xx
        assert_held(load)
        assert load[("bad", 422)] == 32, load


def test_int8_accuracy_bound_is_enforced(forge_cli, classifier_run):
    result = forge_cli("export", classifier_run, "--format", "onnx", "--quantize", "int8",
                       "--set", "max_accuracy_drop=-1", "-o", "strict")
    assert result.returncode == 2
    assert "below the source model's" in result.stderr and "max_accuracy_drop -1" in result.stderr
    assert not (forge_cli.cwd / "strict").exists()
    bad = forge_cli("export", classifier_run, "--format", "onnx", "--quantize", "int4")
    assert bad.returncode == 2 and "--quantize int4: quantize: Input should be 'int8'" in bad.stderr


def test_forecaster_export_and_server(forge_cli):
    write_series(forge_cli.cwd / "s.csv")
    forge_cli("run", "--recipe", "lstm-forecast", "--data", "s.csv", *FORECAST_FAST, "-o", "run", check=True)
    run = forge_cli.cwd / "run"
    forge_cli("export", run, "--format", "onnx", check=True, timeout=300)
    forge_cli("export", run, "--format", "onnx", "--quantize", "int8", check=True, timeout=300)
    m = manifest(run / "exports" / "onnx")
    assert m["kind"] == "onnx-forecaster" and m["parity"]["fp32_max_abs_diff"] < 1e-3
    assert manifest(run / "exports" / "onnx-int8")["parity"]["int8_relative_diff"] <= 0.05
    with Server(forge_cli, run) as torch_server, Server(forge_cli, run / "exports" / "onnx") as onnx_server:
        a = httpx.post(f"{torch_server.url}/forecast", json={}).json()
        b = httpx.post(f"{onnx_server.url}/forecast", json={}).json()
        assert [p["timestamp"] for p in a["forecast"]] == [p["timestamp"] for p in b["forecast"]]
        assert [p["value"] for p in a["forecast"]] == pytest.approx([p["value"] for p in b["forecast"]], rel=1e-4)
        assert httpx.post(f"{onnx_server.url}/forecast", json={"horizon": 99}).status_code == 422
        load = burst(onnx_server.url, "/forecast", [{}, {"level": [50]}, {"horizon": 2}],
                     bad=[{"horizon": 99}, {"level": [100]}, {"history": []}])  # issue 17: 64 clients, 2xx/4xx
        assert_held(load)
        assert load[("bad", 422)] == 32, load
        for p, q in zip(a["forecast"], b["forecast"], strict=True):  # intervals from the ONNX server too
            assert q["lo_95"] <= q["lo_80"] <= q["value"] <= q["hi_80"] <= q["hi_95"]
            assert q["hi_95"] == pytest.approx(p["hi_95"], rel=1e-4)


def test_panel_forecaster_onnx_export_serve_and_backtest(forge_cli, tmp_path):
    """Per-series scaling and intervals survive the export: ONNX Runtime answers like torch, by id."""
    from forge import Artifact, EvalRequest
    from forge_timeseries.backtest import evaluate

    write_panel(forge_cli.cwd / "p.csv", n_series=8, n=48)
    forge_cli("run", "--recipe", "lstm-forecast", "--data", "p.csv", "--set", "id_column=store", *FORECAST_FAST,
              "--set", "baselines=[]", "-o", "run", check=True)
    run = forge_cli.cwd / "run"
    forge_cli("export", run, "--format", "onnx", check=True, timeout=300)
    onnx = run / "exports" / "onnx"
    m = manifest(onnx)
    assert m["kind"] == "onnx-forecaster" and m["id_column"] == "store" and m["series"] == 8
    assert m["parity"]["fp32_max_abs_diff"] < 1e-3
    with Server(forge_cli, run) as torch_server, Server(forge_cli, onnx) as onnx_server:
        for series in ("s00", "s05"):
            a = httpx.post(f"{torch_server.url}/forecast", json={"id": series}).json()
            b = httpx.post(f"{onnx_server.url}/forecast", json={"id": series}).json()
            assert [p["timestamp"] for p in a["forecast"]] == [p["timestamp"] for p in b["forecast"]]
            for key in ("value", "lo_80", "hi_95"):
                assert [p[key] for p in b["forecast"]] == pytest.approx([p[key] for p in a["forecast"]], rel=1e-4)
        missing = httpx.post(f"{onnx_server.url}/forecast", json={})
        assert missing.status_code == 422 and "id: required" in missing.json()["error"]["message"]
    results = [evaluate(Artifact.load(path), EvalRequest(data=forge_cli.cwd / "p.csv", output_dir=tmp_path / name,
                                                         options={"n_windows": 1, "baselines": "[]"}))
               for name, path in (("torch", run), ("onnx", onnx))]
    assert len(results[1].records) == 8
    assert results[1].metrics["mase"] == pytest.approx(results[0].metrics["mase"], rel=1e-4)
