"""``forge predict --engine ray``: the same predictor on a local Ray actor pool gives the same file as the
single-process path, row for row (bad rows included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'forge-core[ray]'")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert) -> Path:
    from tiny_models import make_tiny_classifier_artifact

    return make_tiny_classifier_artifact(tmp_path_factory.mktemp("predict-ray") / "clf", tiny_bert)


TEXTS = ["good movie", "awful film", "i love it", "bad plot", "great acting", "sad film", "very fine indeed, yes"]


def test_ray_engine_output_equals_the_single_process_output(forge_cli, classifier):
    rows = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)] if i % 17 != 5 else ""} for i in range(150)]
    (forge_cli.cwd / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["predict", classifier, "-i", "in.jsonl", "--batch-size", "8", "--chunk-rows", "64", "--json"]
    local = forge_cli(*common, "-o", "local.jsonl")
    ray = forge_cli(*common, "-o", "ray.jsonl", "--engine", "ray", "--workers", "2",
                    timeout=600)
    assert local.returncode == 4 and ray.returncode == 4, ray.stderr  # the empty texts fail on both
    assert "predicting on Ray " in ray.stderr and "2 actors" in ray.stderr
    assert (forge_cli.cwd / "ray.jsonl").read_bytes() == (forge_cli.cwd / "local.jsonl").read_bytes()
    assert (forge_cli.cwd / "ray.jsonl.errors.jsonl").read_bytes() == \
        (forge_cli.cwd / "local.jsonl.errors.jsonl").read_bytes()
    summary = json.loads(ray.stdout)
    assert summary["rows"] == 150 and summary["failed"] == len([r for r in rows if not r["text"]])


def test_ray_is_imported_only_when_asked(forge_cli):
    code = "import sys; from forge.cli import app; import forge.cli.predict, forge.batch; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    bad = forge_cli("predict", "nowhere", "-i", "x.jsonl", "-o", "y.jsonl", "--address", "auto")
    assert bad.returncode == 2 and "--address/--workers: only with --engine ray" in bad.stderr
