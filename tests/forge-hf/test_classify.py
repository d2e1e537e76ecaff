"""classify recipe, sentiment template and the /predict server (torch), end to end."""

from __future__ import annotations

import json

import httpx
import pytest
from support import Server, assert_held, burst
from test_sft import manifest

REVIEWS = [("good movie", "positive"), ("great film", "positive"), ("i love it", "positive"),
           ("bad movie", "negative"), ("awful film", "negative"), ("i hate it", "negative")] * 4


def write_reviews(path, rows=REVIEWS, header="text,label"):
    path.write_text(header + "\n" + "".join(f"{t},{label}\n" for t, label in rows))
    return path


FAST = ["--set", "num_train_epochs=1", "--set", "per_device_train_batch_size=8", "--no-tracking"]


def test_classify_end_to_end_and_server(forge_cli, tiny_bert):
    write_reviews(forge_cli.cwd / "r.csv")
    forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", *FAST, "-o", "run", check=True)
    run = forge_cli.cwd / "run"
    m = manifest(run)
    assert m["artifact"]["kind"] == "sequence-classifier"
    assert {"eval_accuracy", "eval_macro_f1"} <= set(m["metrics"])
    assert m["dataset"]["labels"] == ["negative", "positive"] and m["dataset"]["label_counts"]["positive"] == 12
    art = json.loads((run / "artifact" / "forge.json").read_text())
    assert art["labels"] == ["negative", "positive"] and len(art["confusion_matrix"]) == 2
    assert (run / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert len((run / "artifact" / "heldout.jsonl").read_text().splitlines()) == m["dataset"]["eval_records"]
    with Server(forge_cli, run, "--api-key", "k", "--max-body-bytes", "4000") as server:
        auth = {"X-API-Key": "k"}
        one = httpx.post(f"{server.url}/predict", json={"text": "good movie"}, headers=auth).json()
        assert one["label"] in ("negative", "positive") and set(one["scores"]) == {"negative", "positive"}
        assert one["confidence"] == pytest.approx(max(one["scores"].values()))
        many = httpx.post(f"{server.url}/predict/batch", json={"texts": ["good movie", "awful film"]},
                          headers=auth).json()
        assert many["results"][0] == one
        for body, status, message in [
            ({"text": ""}, 422, "text: must not be empty"),
            ({"text": "   "}, 422, "text: must not be empty"),
            ({"text": 42}, 422, "text: Input should be a valid string"),
            ({"texts": []}, 422, "texts: List should have at least 1 item"),
            ({"text": "x" * 30000}, 413, "request body over 4000 bytes"),
        ]:
            path = "/predict/batch" if "texts" in body else "/predict"
            response = httpx.post(f"{server.url}{path}", json=body, headers=auth)
            assert response.status_code == status, body
            assert message in response.json()["error"]["message"]
        # issue 20: a lone surrogate among concurrent requests (one micro-batch) answers only its own request
        from concurrent.futures import ThreadPoolExecutor

        bodies = ['{"text": "good movie"}'] * 15 + ['{"text": "a\\ud800b"}']
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda body: httpx.post(
                f"{server.url}/predict", content=body, headers={**auth, "Content-Type": "application/json"}), bodies))
        assert [a.status_code for a in answers] == [200] * 15 + [422]
        assert answers[-1].json()["error"]["param"] == "text"
        for a in answers[:15]:
            assert a.json()["scores"] == pytest.approx(one["scores"], abs=1e-5)
        assert httpx.post(f"{server.url}/predict", json={"text": "hi"}).status_code == 401
        assert httpx.post(f"{server.url}/predict", json={"text": "hi"}, headers={"X-API-Key": "kk"}).status_code == 401
        assert httpx.post(f"{server.url}/predict", json={"text": "hi"},
                          headers={"Authorization": "Bearer k"}).status_code == 200
        assert httpx.get(f"{server.url}/ready").json() == {"ready": True}
        # issue 17: 64 concurrent clients, a quarter of them with bad bodies: only 2xx/4xx (429 when the queue is full)
        load = burst(server.url, "/predict", [{"text": t} for t, _ in REVIEWS[:6]], headers=auth,
                     bad=[{"text": ""}, {"text": 42}, '{"text": "a\\ud800b"}', {"texts": ["x"]}, "{"])
        assert_held(load)
        assert load[("bad", 422)] + load[("bad", 400)] == 32, load
        assert_held(burst(server.url, "/predict/batch", [{"texts": ["good movie", "awful film"]}], headers=auth,
                          bad=[{"texts": []}, {"texts": ["ok", ""]}]))


def test_too_long_text_on_the_server(forge_cli, tiny_bert):
    write_reviews(forge_cli.cwd / "r.csv")
    forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", *FAST, "-o", "run", check=True)
    with Server(forge_cli, "run", "--max-body-bytes", "100000") as server:
        response = httpx.post(f"{server.url}/predict", json={"text": "good " * 5000})
        assert response.status_code == 422
        assert response.json()["error"]["message"] == "text: 25000 characters is longer than the limit of 20000"


def test_integer_labels_with_names_and_multiclass(forge_cli, tiny_bert):
    rows = [("good movie", 2), ("the plot", 1), ("bad film", 0)] * 5
    write_reviews(forge_cli.cwd / "r.csv", rows)
    forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", *FAST,
              "--set", "label_names=[neg, neutral, pos]", "-o", "run", check=True)
    assert manifest(forge_cli.cwd / "run")["dataset"]["labels"] == ["neg", "neutral", "pos"]


@pytest.mark.parametrize(("content", "message"), [
    ("text,label\ngood,positive\n,negative\n", "r.csv:3: field 'text' is empty"),
    ("text,label\ngood,positive\nbad,\n", "r.csv:3: missing field 'label'"),
    ("words,label\ngood,positive\n", "r.csv:2: missing field 'text'"),
    ("text,label\ngood,1\nbad,1\n", "r.csv: every record has the same label; a classifier needs at least two"),
])
def test_bad_classification_data(forge_cli, tiny_bert, content, message):
    (forge_cli.cwd / "r.csv").write_text(content)
    result = forge_cli("run", "--recipe", "classify", "--model", tiny_bert, "--data", "r.csv", "--no-tracking")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {forge_cli.cwd / message}"


@pytest.mark.slow
def test_sentiment_template_on_packaged_minilm(forge_cli):
    forge_cli("init", "sentiment", "proj", check=True)
    project = forge_cli.cwd / "proj"
    forge_cli("run", "--config", "config.yaml", "-o", "r", "--no-tracking", cwd=project, check=True, timeout=600)
    m = manifest(project / "r")
    assert m["provider"]["alias"] == "minilm-l6"
    assert m["metrics"]["eval_accuracy"] >= 0.9
    with Server(forge_cli, project / "r") as server:
        answer = httpx.post(f"{server.url}/predict", json={"text": "The story was wonderful."}).json()
        assert answer["label"] == "positive" and answer["confidence"] > 0.5
