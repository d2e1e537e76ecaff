"""The ``classification`` suite, called as ``forge eval`` calls it, on a tiny BERT classifier and its ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_models import REVIEWS, make_classifier_artifact
from forge import Artifact, ConfigError, DataError, EvalRequest, ForgeError
from forge_hf.eval_classification import expected_calibration_error, macro_f1


def run_suite(artifact, tmp_path, data=None, **options):
    from forge.plugins import load_plugins

    evaluator = load_plugins().get("evaluators", "classification").item
    return evaluator.run(artifact, EvalRequest(data=data, options=options, output_dir=tmp_path / "eval", seed=1,
                                               log=lambda message: None))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert):
    return Artifact.load(make_classifier_artifact(tmp_path_factory.mktemp("clf"), tiny_bert))


def test_metrics_against_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert macro_f1(truth, predicted, 4) == pytest.approx(sklearn.f1_score(truth, predicted, average="macro"))
    # perfectly calibrated bins → ECE 0; always 90% sure and always right → 0.1
    assert expected_calibration_error(np.array([0.9] * 10), np.ones(10), 10) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([0.75] * 4), np.array([1.0, 1, 1, 0]), 10) == pytest.approx(0.0)


def test_classification_suite_on_heldout_and_a_file(classifier, tmp_path):
    result = run_suite(classifier, tmp_path)  # default: heldout.jsonl, everything fitted → accuracy 1
    assert result.metrics["accuracy"] == 1.0 and result.metrics["macro_f1"] == 1.0
    assert len(result.records) == len(REVIEWS) and result.per_example["accuracy"] == [1.0] * len(REVIEWS)
    assert {"precision_positive", "recall_negative", "f1_positive", "ece", "log_loss"} <= set(result.metrics)
    record = result.records[0]
    assert record["input"] == REVIEWS[0][0] and record["expected"] == record["output"] == "positive"
    assert record["score"] == pytest.approx(record["scores"]["positive"])
    assert [p.name for p in result.plots] == ["confusion_matrix.png", "reliability.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in result.plots)
    assert result.extra["confusion_matrix"] == [[4, 0], [0, 4]]

    # a CSV with other column names, integer ids, a flipped label: one error in eight
    rows = [(t, ["negative", "positive"].index(y)) for t, y in REVIEWS]
    rows[0] = (rows[0][0], 0)
    data = tmp_path / "test.csv"
    data.write_text("review,y\n" + "".join(f"{t},{y}\n" for t, y in rows))
    result = run_suite(classifier, tmp_path, data, text_column="review", label_column="y")
    assert result.metrics["accuracy"] == pytest.approx(7 / 8)
    assert result.metrics["recall_negative"] == pytest.approx(4 / 5) and result.metrics["precision_positive"] == 0.75
    low, high = result.intervals["macro_f1"]
    assert low <= result.metrics["macro_f1"] <= high and low < high
    again = run_suite(classifier, tmp_path, data, text_column="review", label_column="y")
    assert again.intervals == result.intervals  # seeded


def test_onnx_export_gives_the_same_result(classifier, tmp_path):
    import forge
    from forge_onnx.export import export

    out = tmp_path / "onnx"
    out.mkdir()
    forge.artifacts.write_artifact_manifest(out, export(classifier, out, {}), {
        "parent": {"path": str(classifier.path), "kind": classifier.kind,
                   "seal": forge.seals.seal(classifier.path, "parent")}})  # as forge export writes it
    onnx = Artifact.load(out)
    torch_result = run_suite(classifier, tmp_path / "a")
    onnx_result = run_suite(onnx, tmp_path / "b")  # heldout.jsonl found beside the parent
    assert onnx_result.metrics["accuracy"] == torch_result.metrics["accuracy"]
    assert onnx_result.metrics["log_loss"] == pytest.approx(torch_result.metrics["log_loss"], abs=1e-4)


def test_bad_input_is_one_line(classifier, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"text": "good", "label": "neutral"}) + "\n")
    cases = [({"data": data}, DataError, r"bad.jsonl:1: label 'neutral' is not one of the model's labels"),
             ({"data": tmp_path / "none.csv"}, DataError, "none.csv: no such file"),
             ({"data": data, "label_column": "y"}, DataError, r"missing field 'y' \(--set label_column=NAME"),
             ({"bins": "0"}, ConfigError, "--set bins=0: must be at least 1"),
             ({"colour": "red"}, ConfigError, "--set colour: the classification suite takes")]
    for given, error, message in cases:
        options = {k: v for k, v in given.items() if k != "data"}
        with pytest.raises(error, match=message) as info:
            run_suite(classifier, tmp_path, given.get("data"), **options)
        assert "\n" not in str(info.value)
    (classifier.path / "heldout.jsonl").rename(tmp_path / "kept.jsonl")
    try:
        with pytest.raises(ForgeError, match="no held-out split kept with this artifact"):
            run_suite(classifier, tmp_path)
    finally:
        (tmp_path / "kept.jsonl").rename(classifier.path / "heldout.jsonl")
