"""``forge predict``: files of rows through an artifact's in-process predictor, chunked, atomic and resumable; bad
rows reported with their row number, the rest predicted."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import forge
import pytest


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert) -> Path:
    from tiny_models import make_tiny_classifier_artifact

    return make_tiny_classifier_artifact(tmp_path_factory.mktemp("predict") / "clf", tiny_bert)


@pytest.fixture(scope="module")
def reference(classifier):
    """The predictor called directly: what every file's predictions must equal."""
    predictor = forge.load_predictor(forge.Artifact.load(classifier))
    yield lambda texts: predictor.predict([{"text": t} for t in texts])
    predictor.close()


TEXTS = ["good movie", "awful film", "i love it", "bad plot", "great acting", "sad film", "very fine"]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_to_jsonl_with_bad_rows(forge_cli, classifier, reference):
    rows = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)] if i % 10 != 3 else ""} for i in range(95)]
    write_csv(forge_cli.cwd / "in.csv", rows)
    result = forge_cli("predict", classifier, "--input", "in.csv", "--output", "out.jsonl", "--batch-size", "8",
                       "--chunk-rows", "20", "--json")
    assert result.returncode == 4, result.stderr  # complete, but some rows failed
    summary = json.loads(result.stdout)
    assert summary["rows"] == 95 and summary["failed"] == 10 and summary["predicted"] == 85
    assert summary["errors"].endswith("out.jsonl.errors.jsonl")
    assert "predicted 85 of 95 rows into out.jsonl" in result.stderr and "10 failed" in result.stderr
    assert "predicting: 100%" in result.stderr and "95/95" in result.stderr  # the progress bar
    out = read_jsonl(forge_cli.cwd / "out.jsonl")
    good = [r for r in rows if r["text"]]
    assert [o["id"] for o in out] == [r["id"] for r in good]
    assert [o["row"] for o in out] == [i + 1 for i, r in enumerate(rows) if r["text"]]
    expected = reference([r["text"] for r in good])
    for got, want in zip(out, expected, strict=True):
        assert got["label"] == want["label"] and got["scores"] == pytest.approx(want["scores"], abs=1e-6)
    errors = read_jsonl(forge_cli.cwd / "out.jsonl.errors.jsonl")
    assert errors[0] == {"row": 4, "id": "r3", "error": "text: a non-empty string is required"}
    assert [e["row"] for e in errors] == [i + 1 for i in range(95) if i % 10 == 3]
    leftovers = [p.name for p in forge_cli.cwd.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no work directory, no temporary file


def test_jsonl_and_parquet_in_csv_and_parquet_out(forge_cli, classifier, reference):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = [json.dumps({"text": t}) for t in TEXTS] + ["{not json", "[1, 2]", json.dumps({"text": 42})]
    (forge_cli.cwd / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = forge_cli("predict", classifier, "-i", "in.jsonl", "-o", "out.csv")
    assert result.returncode == 4, result.stderr
    with (forge_cli.cwd / "out.csv").open() as handle:
        out = list(csv.DictReader(handle))
    assert list(out[0]) == ["row", "label", "confidence", "scores.negative", "scores.positive"]
    assert [o["label"] for o in out] == [p["label"] for p in reference(TEXTS)]
    reasons = {e["row"]: e["error"] for e in read_jsonl(forge_cli.cwd / "out.csv.errors.jsonl")}
    assert set(reasons) == {8, 9, 10}
    assert reasons[8].startswith("not valid JSON") and reasons[9] == "expected a JSON object, got list"
    assert "text" in reasons[10]

    pq.write_table(pa.table({"key": [10, 20, 30], "text": TEXTS[:3]}), forge_cli.cwd / "in.parquet")
    forge_cli("predict", classifier, "-i", "in.parquet", "-o", "out.parquet", "--id-column", "key", check=True)
    table = pq.read_table(forge_cli.cwd / "out.parquet").to_pylist()
    assert [(r["row"], r["id"]) for r in table] == [(1, 10), (2, 20), (3, 30)]
    assert [r["label"] for r in table] == [p["label"] for p in reference(TEXTS[:3])]
    assert set(table[0]["scores"]) == {"negative", "positive"}
    assert not (forge_cli.cwd / "out.parquet.errors.jsonl").exists()


def test_interrupted_prediction_resumes_after_the_last_complete_chunk(forge_cli, classifier, reference):
    from forge.batch import PredictJob, run

    rows = [{"id": i, "text": TEXTS[i % len(TEXTS)]} for i in range(50)]
    write_csv(forge_cli.cwd / "in.csv", rows)
    out = forge_cli.cwd / "out.jsonl"

    class Interrupted:  # the real predictor, stopped (as Ctrl-C would) during the third chunk
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def predict(self, batch):
            self.calls += 1
            if self.calls == 5:
                raise KeyboardInterrupt
            return self.inner.predict(batch)

    job = PredictJob(artifact=forge.Artifact.load(classifier), input=forge_cli.cwd / "in.csv", output=out,
                     options={"batch_size": 5}, batch_size=5, chunk_rows=10)
    with forge.load_predictor(job.artifact, job.options) as predictor, pytest.raises(KeyboardInterrupt):
        run(job, Interrupted(predictor))
    assert not out.exists()  # nothing half-written
    assert sorted(p.name for p in job.work_dir.glob("part-*")) == ["part-000000.jsonl", "part-000001.jsonl"]

    again = forge_cli("predict", classifier, "-i", "in.csv", "-o", out, "--batch-size", "5", "--chunk-rows", "10")
    assert again.returncode == 2 and "--resume continues it, --overwrite starts over" in again.stderr
    changed = forge_cli("predict", classifier, "-i", "in.csv", "-o", out, "--batch-size", "5", "--chunk-rows", "7",
                        "--resume")
    assert changed.returncode == 2 and "started with another input, artifact or options" in changed.stderr
    resumed = forge_cli("predict", classifier, "-i", "in.csv", "-o", out, "--batch-size", "5", "--chunk-rows", "10",
                        "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after row 20 (2 complete chunks)" in resumed.stderr
    assert json.loads(resumed.stdout)["resumed_rows"] == 20
    got = read_jsonl(out)
    assert [r["id"] for r in got] == [str(i) for i in range(50)]  # CSV cells are text
    assert [r["label"] for r in got] == [p["label"] for p in reference([r["text"] for r in rows])]
    assert not job.work_dir.exists()


def test_bad_input_is_one_line_and_writes_nothing(forge_cli, classifier, tmp_path):
    write_csv(forge_cli.cwd / "in.csv", [{"text": "good movie"}])
    (forge_cli.cwd / "taken.jsonl").write_text("keep me\n")
    scalar = tmp_path / "scalar"
    scalar.mkdir()
    (scalar / "forge.json").write_text(json.dumps({"kind": "scalar"}))
    cases = [
        ((classifier, "-i", "nope.csv", "-o", "o.jsonl"), "--input nope.csv: no such file"),
        ((classifier, "-i", "in.csv", "-o", "o.txt"), "--output o.txt: unknown file type '.txt'"),
        ((classifier, "-i", "in.csv", "-o", "taken.jsonl"), "--output taken.jsonl: already exists (--overwrite"),
        ((classifier, "-i", "in.csv", "-o", "in.csv", "--overwrite"), "is the input file"),
        ((scalar, "-i", "in.csv", "-o", "o.jsonl"), "cannot load a scalar artifact for prediction"),
        ((tmp_path / "missing", "-i", "in.csv", "-o", "o.jsonl"), "no such directory"),
    ]
    for args, message in cases:
        result = forge_cli("predict", *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("forge: error: ") and message in lines[-1], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert (forge_cli.cwd / "taken.jsonl").read_text() == "keep me\n"
    assert not (forge_cli.cwd / "o.jsonl").exists()
    forge_cli("predict", classifier, "-i", "in.csv", "-o", "taken.jsonl", "--overwrite", check=True)
    assert read_jsonl(forge_cli.cwd / "taken.jsonl")[0]["row"] == 1


def test_causal_lm_prompts(forge_cli, tiny_lm):
    lm = forge_cli.cwd / "lm"
    shutil.copytree(tiny_lm, lm)
    (lm / "forge.json").write_text(json.dumps({"schema": 1, "kind": "causal-lm"}))
    rows = [{"prompt": "the capital of"}, {"messages": [{"role": "user", "content": "hi"}]}, {"prompt": ""}]
    (forge_cli.cwd / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = forge_cli("predict", lm, "-i", "p.jsonl", "-o", "gen.jsonl", "--set", "max_new_tokens=4")
    assert result.returncode == 4, result.stderr
    out = read_jsonl(forge_cli.cwd / "gen.jsonl")
    assert [o["row"] for o in out] == [1, 2] and all(isinstance(o["text"], str) and o["tokens"] <= 4 for o in out)
    assert read_jsonl(forge_cli.cwd / "gen.jsonl.errors.jsonl")[0]["row"] == 3


def test_forecaster_requests(forge_cli):
    series = "date,value\n" + "".join(f"{2000 + i // 12}-{i % 12 + 1:02d}-01,{100 + i + 10 * (i % 12 > 5)}\n"
                                      for i in range(60))
    (forge_cli.cwd / "s.csv").write_text(series)
    forge_cli("run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "horizon=6", "--no-tracking", "-o",
              "stat", check=True)
    rows = [{"horizon": 3}, {"horizon": 2, "level": [90]}, {"horizon": 0}]
    (forge_cli.cwd / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = forge_cli("predict", "stat", "-i", "q.jsonl", "-o", "f.jsonl")
    assert result.returncode == 4, result.stderr
    out = read_jsonl(forge_cli.cwd / "f.jsonl")
    assert [len(o["forecast"]) for o in out] == [3, 2]
    assert out[0]["forecast"][0]["timestamp"].startswith("2005-01-01") and "hi_95" in out[0]["forecast"][0]
    assert set(out[1]["forecast"][0]) == {"timestamp", "value", "lo_90", "hi_90"}
    assert read_jsonl(forge_cli.cwd / "f.jsonl.errors.jsonl") == [
        {"row": 3, "error": "horizon: Input should be greater than or equal to 1"}]
