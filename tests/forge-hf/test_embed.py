"""embed recipe (sentence-transformers, in-batch negatives), the retrieval suite, POST /embed (torch and ONNX
Runtime) and the ONNX export of a sentence embedder."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from support import Server, assert_held, burst
from test_sft import manifest

TRIPLET = {"anchor": "good movie", "positive": "the good film", "negative": "not a bad plot"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_retrieval_metrics_rank_each_anchor_against_the_whole_corpus():
    from forge_hf.retrieval import corpus_of, metrics_from_ranks, ranks

    records = [{"anchor": "a", "positive": "p1", "negative": "n1"}, {"anchor": "b", "positive": "p2"},
               {"anchor": "c", "positive": "p1"}]
    documents, gold = corpus_of(records)
    assert documents == ["p1", "p2", "n1"] and gold == [0, 1, 0]
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    docs = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 1.0]])  # unnormalised: cosine, not dot product, decides
    rank = ranks(queries, docs, gold)
    assert rank.tolist() == [1, 1, 3]
    values = metrics_from_ranks(rank, [1, 2])
    assert values == pytest.approx({"recall_at_1": 2 / 3, "recall_at_2": 2 / 3, "mrr": (1 + 1 + 1 / 3) / 3})


@pytest.mark.parametrize(("rows", "message"), [
    ([{"anchor": "good movie", "positive": "great film"}, {"anchor": "bad movie", "positive": "  "}],
     "pairs.jsonl:2: field 'positive' is empty"),
    ([{"query": "good movie", "positive": "great film"}],
     "pairs.jsonl:1: missing field 'anchor' (fields: query, positive)"),
    ([TRIPLET, {"anchor": "bad movie", "positive": "awful film"}],
     "pairs.jsonl:2: missing field 'negative' (other records have one: a triplet file needs it on every record)"),
])
def test_bad_pairs_are_one_line_before_any_model_loads(forge_cli, rows, message):
    write_jsonl(forge_cli.cwd / "pairs.jsonl", rows)
    result = forge_cli("run", "--recipe", "embed", "--model", "no/such-model", "--data", "pairs.jsonl",
                       "--no-tracking")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"forge: error: {forge_cli.cwd / message}"


PAIRS = [
    ("How do I reset my password?", "Open settings, choose security and click 'reset password'."),
    ("What time does the store open?", "We open at nine in the morning every weekday."),
    ("Can I return a product after a month?", "Returns are accepted within sixty days with a receipt."),
    ("Is there free shipping?", "Orders over fifty dollars ship for free."),
    ("How long does delivery take?", "Delivery usually takes three to five business days."),
    ("Do you sell gift cards?", "Yes, gift cards are available in any amount online."),
    ("Where is my order?", "Track your parcel with the link in the confirmation email."),
    ("Can I pay with cash?", "We accept cash, debit and credit cards in our shops."),
    ("How do I cancel my subscription?", "Go to your account page and press 'cancel subscription'."),
    ("Are pets allowed inside?", "Dogs on a leash are welcome in the store."),
    ("Do you have a student discount?", "Students get ten percent off with a valid card."),
    ("What is the warranty period?", "Every device has a two year warranty."),
]


EMBED_BAD = [{"text": " "}, {"texts": ["fine", ""]}, {"text": 7}, '{"texts": ["ok", "a\\ud800b"]}']


@pytest.mark.slow
def test_embed_packaged_minilm_run_eval_serve_and_onnx_export(forge_cli):
    """The embedding path on the packaged all-MiniLM-L6-v2 (triplets, renamed columns): train a few steps; the
    retrieval suite and the torch /embed app in-process; export to ONNX (parity), then `forge eval` and `forge serve`
    of the export (ONNX Runtime: no torch in those processes)."""
    import forge
    from fastapi.testclient import TestClient
    from forge import Artifact, EvalRequest
    from forge.serving.settings import ServeSettings
    from forge_hf.eval_retrieval import evaluate
    from forge_hf.serve_embedder import create_embedder_app

    rows = [{"question": q, "answer": a, "wrong": PAIRS[(i + 5) % len(PAIRS)][1]} for i, (q, a) in enumerate(PAIRS)]
    write_jsonl(forge_cli.cwd / "qa.jsonl", rows)
    forge_cli("run", "--recipe", "embed", "--data", "qa.jsonl", "--set", "anchor_column=question",
              "--set", "positive_column=answer", "--set", "negative_column=wrong", "--set", "max_steps=2",
              "--set", "per_device_train_batch_size=4", "--set", "eval_split=0.34", "--set", "max_length=64",
              "-o", "run", "--no-tracking", check=True, timeout=600)
    run = forge_cli.cwd / "run"
    m = manifest(run)
    assert m["provider"]["alias"] == "minilm-l6" and m["artifact"]["kind"] == "sentence-embedder"
    assert m["dataset"]["format"] == "triplets" and m["dataset"]["eval_records"] == 4
    assert m["metrics"]["eval_base_mrr"] >= 0.75 and m["metrics"]["eval_mrr"] >= 0.75  # pretrained: most match
    artifact = Artifact.load(run / "artifact")
    assert artifact.manifest["dimension"] == 384 and artifact.manifest["pooling"] == "mean"
    assert artifact.manifest["normalize"] and len((run / "artifact" / "heldout.jsonl").read_text().splitlines()) == 4

    # the suite on the kept held-out split reproduces the recipe's own after-training figures
    result = evaluate(artifact, EvalRequest(data=None, output_dir=forge_cli.cwd / "eval"))
    assert result.metrics["mrr"] == pytest.approx(m["metrics"]["eval_mrr"], abs=1e-5)
    assert result.metrics["recall_at_1"] == pytest.approx(m["metrics"]["eval_recall_at_1"], abs=1e-5)
    held = [json.loads(x) for x in (run / "artifact" / "heldout.jsonl").read_text().splitlines()]
    distinct = {r["positive"] for r in held} | {r["negative"] for r in held}  # a negative may be another's positive
    assert len(result.per_example["mrr"]) == 4 and result.extra["documents"] == len(distinct) >= 5

    texts = [q for q, _ in PAIRS[:3]]
    with forge.load_predictor(artifact) as predictor:
        expected = predictor.embed(texts)
        assert predictor.predict([{"text": texts[0]}])[0]["embedding"] == pytest.approx(expected[0].tolist(),
                                                                                       abs=1e-5)
    with TestClient(create_embedder_app(artifact, ServeSettings(max_body_bytes=4000))) as client:
        many = client.post("/embed", json={"texts": texts}).json()
        assert many["dimension"] == 384 and many["normalized"]
        np.testing.assert_allclose(np.array(many["embeddings"]), expected, atol=1e-5)
        one = client.post("/embed", json={"text": texts[0]}).json()
        np.testing.assert_allclose(one["embedding"], expected[0], atol=1e-5)
        for body, status, text in [
            ({"text": " "}, 422, "text: must not be empty"),
            ({"texts": ["fine", ""]}, 422, "texts.1: must not be empty"),
            ({"texts": []}, 422, "texts: List should have at least 1 item"),
            ({"text": "a", "texts": ["b"]}, 422, "give either 'text' (one string) or 'texts'"),
            ({"texts": ["x" * 5000]}, 413, "request body over 4000 bytes"),
        ]:
            response = client.post("/embed", json=body)
            assert response.status_code == status, body
            assert text in response.json()["error"]["message"]
        # issue 17: 64 concurrent clients (the app in-process), a quarter of them bad: 2xx/4xx, 429 when queued full
        load = burst(client, "/embed", [{"text": texts[0]}, {"texts": texts[1:]}], bad=EMBED_BAD)
        assert_held(load)
        assert load[("bad", 422)] == 32, load
        assert not load[("good", 429)], load  # 64 clients never fill a queue of 64 requests (a texts list is one)

    forge_cli("export", "run", "--format", "onnx", check=True, timeout=600)
    export = run / "exports" / "onnx"
    exported = manifest(export)
    assert exported["kind"] == "onnx-sentence-embedder" and exported["dimension"] == 384 and exported["normalize"]
    assert exported["parity"]["fp32_max_abs_diff"] <= 1e-4 and exported["parity"]["samples"] == 8

    report = json.loads(forge_cli("eval", export, "--suite", "retrieval", "--gate", "mrr>=0.75", "--json",
                                  check=True).stdout)
    assert report["artifact_kind"] == "onnx-sentence-embedder" and report["passed"] is True
    assert report["metrics"]["mrr"]["value"] == pytest.approx(m["metrics"]["eval_mrr"], abs=1e-3)

    with Server(forge_cli, export) as server:
        load = burst(server.url, "/embed", [{"text": texts[0]}, {"texts": texts[1:]}], bad=EMBED_BAD)
        assert_held(load)
        assert load[("bad", 422)] == 32, load
        assert not load[("good", 429)], load  # 64 clients never fill a queue of 64 requests (a texts list is one)
        body = httpx.post(f"{server.url}/embed", json={"texts": texts}).json()
        np.testing.assert_allclose(np.array(body["embeddings"]), expected, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(np.array(body["embeddings"]), axis=1), 1.0, atol=1e-4)
