"""``forge.load_predictor``: the same rows → outputs for torch and ONNX classifiers, causal LMs (batched greedy
generation with left padding equals one prompt at a time) and forecasters."""

from __future__ import annotations

import forge
import pytest
from eval_models import REVIEWS, make_classifier_artifact, make_lm_artifact


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert):
    return forge.Artifact.load(make_classifier_artifact(tmp_path_factory.mktemp("clf"), tiny_bert))


@pytest.fixture(scope="module")
def lm(tmp_path_factory, tiny_lm):
    return forge.Artifact.load(make_lm_artifact(tmp_path_factory.mktemp("lm"), tiny_lm))


def test_every_predicting_server_is_registered():
    from forge.plugins import load_plugins

    predicting = {k for r in load_plugins().all("servers") if r.item.predict for k in r.item.accepts}
    assert {"sequence-classifier", "onnx-sequence-classifier", "causal-lm", "causal-lm-adapter", "forecaster",
            "stat-forecaster", "onnx-forecaster"} <= predicting


def test_unknown_kind_is_one_line(tmp_path):
    from eval_models import write_manifest

    tmp_path.mkdir(exist_ok=True)
    artifact = forge.Artifact.load(write_manifest(tmp_path, "gguf-causal-lm"))
    with pytest.raises(forge.ForgeError, match="cannot load a gguf-causal-lm artifact for prediction") as info:
        forge.load_predictor(artifact)
    assert "\n" not in str(info.value)


def test_torch_and_onnx_classifier_predict_the_same(classifier, tmp_path):
    from forge_onnx.export import export

    rows = [{"text": t} for t, _ in REVIEWS]
    with forge.load_predictor(classifier, {"batch_size": 3}) as torch_predictor:
        assert isinstance(torch_predictor, forge.Predictor)
        torch_out = torch_predictor.predict(rows)
        with pytest.raises(forge.DataError, match=r"rows.1.text: a non-empty string is required"):
            torch_predictor.predict([{"text": "good"}, {"text": " "}])
    assert [o["label"] for o in torch_out] == [y for _, y in REVIEWS]  # it fitted them
    assert all(set(o["scores"]) == {"negative", "positive"} for o in torch_out)
    assert all(o["confidence"] == pytest.approx(max(o["scores"].values())) for o in torch_out)
    (tmp_path / "onnx").mkdir()
    result = export(classifier, tmp_path / "onnx", {})
    forge.artifacts.write_artifact_manifest(tmp_path / "onnx", result, {})
    onnx = forge.Artifact.load(tmp_path / "onnx")
    assert onnx.kind == "onnx-sequence-classifier"
    with forge.load_predictor(onnx) as onnx_predictor:
        onnx_out = onnx_predictor.predict(rows)
    for a, b in zip(torch_out, onnx_out, strict=True):
        assert a["label"] == b["label"]
        assert a["scores"]["positive"] == pytest.approx(b["scores"]["positive"], abs=1e-4)


def test_lm_batched_generation_equals_one_at_a_time(lm):
    rows = [{"messages": [{"role": "user", "content": "what is the capital of france"}]},
            {"prompt": "the capital of"},
            {"messages": [{"role": "user", "content": "a short answer please, the opposite of hot is"}]},
            {"prompt": "convert ten km to miles and then some more words here"}]
    with forge.load_predictor(lm, {"max_new_tokens": 12, "batch_size": 4}) as batched:
        together = batched.predict(rows)
        alone = [batched.generate_ids([batched.encode(r)], 12)[0] for r in rows]
        with pytest.raises(forge.DataError, match=r"rows.0: needs 'prompt'"):
            batched.predict([{"question": "?"}])
    for out, (ids, stopped) in zip(together, alone, strict=True):
        assert out["tokens"] == len(ids) and out["stopped"] == stopped
        assert out["text"] == batched.tokenizer.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
        assert out["tokens"] <= 12
    with pytest.raises(forge.ConfigError, match="--set batch_size=0: must be at least 1"):
        forge.load_predictor(lm, {"batch_size": 0})
