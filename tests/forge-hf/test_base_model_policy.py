"""The base-model path policy (issue 20 item 6): a manifest's ``base_model`` loads only an alias, a Hub id, a path
inside the artifact, a directory the operator listed in FORGE_MODEL_DIRS, or the local base this user's own training
run sealed; anything else is one line, exit 2."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from forge import Artifact
from forge.errors import ForgeError
from forge.seals import key_path
from forge_hf.base_model import MODEL_DIRS_ENV, SEAL_FIELD, base_model_fields, checked_base_model


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """tmp/artifact (the adapter), tmp/models/base (a local base model outside it), a private key dir."""
    monkeypatch.delenv(MODEL_DIRS_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    artifact = tmp_path / "runs" / "sft-1" / "artifact"
    artifact.mkdir(parents=True)
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    return artifact, base


def adapter(path: Path, **fields) -> Artifact:
    manifest = {"schema": 1, "type": "artifact", "kind": "causal-lm-adapter", **fields}
    (path / "forge.json").write_text(json.dumps(manifest))
    return Artifact.load(path)


def refusal(artifact: Artifact) -> str:
    with pytest.raises(ForgeError) as caught:
        checked_base_model(artifact)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 2
    assert str(artifact.path / "forge.json") in message and "base_model" in message and MODEL_DIRS_ENV in message
    return message


def test_paths_leading_out_of_the_artifact_are_refused(layout, monkeypatch):
    artifact_dir, base = layout
    monkeypatch.chdir(artifact_dir)
    assert str(base.resolve()) in refusal(adapter(artifact_dir, base_model="../../../models/base"))  # `..`
    assert "'/etc'" in refusal(adapter(artifact_dir, base_model="/etc"))  # absolute, outside
    (artifact_dir / "base").symlink_to(base)  # a symlink inside the artifact that leads out
    assert str(base.resolve()) in refusal(adapter(artifact_dir, base_model="base"))
    # an "org/name" that exists as a local path (here, from the working directory) is a path, not a Hub id
    monkeypatch.chdir(base.parent.parent)
    refusal(adapter(artifact_dir, base_model="models/base"))


def test_inside_the_artifact_and_the_operators_model_dirs_are_accepted(layout, tmp_path, monkeypatch):
    artifact_dir, base = layout
    inner = artifact_dir / "base"
    shutil.copytree(base, inner)
    assert checked_base_model(adapter(artifact_dir, base_model="base")) == str(inner.resolve())
    assert checked_base_model(adapter(artifact_dir, base_model=str(inner))) == str(inner.resolve())
    monkeypatch.setenv(MODEL_DIRS_ENV, os.pathsep.join([str(tmp_path / "elsewhere"), str(base.parent)]))
    assert checked_base_model(adapter(artifact_dir, base_model=str(base))) == str(base.resolve())
    # a listed directory does not let a symlink inside it lead further out
    (base.parent / "escape").symlink_to(tmp_path / "runs")
    refusal(adapter(artifact_dir, base_model=str(base.parent / "escape" / "sft-1")))


def test_aliases_and_hub_ids_resolve_as_before(layout):
    from forge_hf.base_model import resolve_base_model

    artifact_dir, _ = layout
    source, info = resolve_base_model(adapter(artifact_dir, base_model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert (source, info) == ("HuggingFaceTB/SmolLM2-135M-Instruct", {"source": "hub",
                                                                      "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    source, info = resolve_base_model(adapter(artifact_dir, base_model="minilm-l6"))  # a packaged alias: no download
    assert info["source"] == "alias" and (Path(source) / "config.json").is_file()


def test_the_training_runs_seal_accepts_its_own_base_and_nothing_else(layout, tmp_path, monkeypatch):
    artifact_dir, base = layout
    monkeypatch.chdir(artifact_dir)
    fields = base_model_fields(str(base))  # what a training run on this local base records
    assert fields[SEAL_FIELD]["path"] == str(base.resolve())
    assert key_path().stat().st_mode & 0o777 == 0o600
    assert checked_base_model(adapter(artifact_dir, **fields)) == str(base.resolve())
    # recorded relative to the training run's working directory: found through the seal from anywhere
    assert checked_base_model(adapter(artifact_dir, **{**fields, "base_model": "./models/base"})) == str(base.resolve())
    # the seal vouches for that one path: a hand-edited base_model beside it is refused
    other = tmp_path / "other"
    other.mkdir()
    assert "'/etc'" in refusal(adapter(artifact_dir, **{**fields, "base_model": "/etc"}))
    refusal(adapter(artifact_dir, **{**fields, "base_model": str(other)}))
    forged = {**fields, "base_model": str(other), SEAL_FIELD: {**fields[SEAL_FIELD], "path": str(other)}}
    refusal(adapter(artifact_dir, **forged))
    # another user's key (or a key others can read) vouches for nothing
    sealed = adapter(artifact_dir, **fields)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "someone-else"))
    assert "seal is not from this user" in refusal(sealed)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key_path().chmod(0o644)
    refusal(sealed)
    key_path().chmod(0o600)
    # the base swapped for a symlink since training no longer matches its seal
    shutil.move(base, tmp_path / "moved")
    base.symlink_to(tmp_path / "moved")
    refusal(sealed)
    assert SEAL_FIELD not in base_model_fields("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_every_loader_of_a_base_model_applies_the_policy_before_loading(layout):
    """serve (torch, vLLM), export (merged, onnx, gguf through load_causal_lm), eval/predict and rlhf: an adapter
    whose manifest points outside is refused before any file of it is read (these adapters hold no weights at all)."""
    from forge_hf import causal_lm, export_merged, predict, serve_lm, serve_vllm
    from forge_hf.recipes import rlhf

    artifact_dir, base = layout
    lm = adapter(artifact_dir, base_model=str(base))
    loaders = [lambda: serve_lm.load_for_inference(lm), lambda: causal_lm.load_causal_lm(lm),
               lambda: export_merged.export(lm, artifact_dir / "out", {}), lambda: rlhf.policy_source(str(lm.path)),
               lambda: serve_vllm.merged_model(lm, "float32")]
    for load in loaders:
        with pytest.raises(ForgeError, match="is a local path outside the artifact"):
            load()
    manifest = {"schema": 1, "type": "artifact", "kind": "sequence-classifier-adapter", "labels": ["a", "b"],
                "base_model": str(base)}
    (artifact_dir / "forge.json").write_text(json.dumps(manifest))
    classifier = Artifact.load(artifact_dir)
    for load in (lambda: predict.load_classifier(classifier), lambda: export_merged.export(classifier, artifact_dir,
                                                                                         {})):
        with pytest.raises(ForgeError, match="is a local path outside the artifact"):
            load()


def test_cli_refuses_a_hand_edited_base_model_and_another_user_needs_the_opt_in(forge_cli, tiny_sft_run, tiny_lm,
                                                                                 tmp_path, monkeypatch):
    manifest = json.loads((tiny_sft_run / "artifact" / "forge.json").read_text())
    assert manifest[SEAL_FIELD]["path"] == str(Path(tiny_lm).resolve())  # training sealed its local base
    edited = tmp_path / "edited"
    shutil.copytree(tiny_sft_run / "artifact", edited)
    (edited / "forge.json").write_text(json.dumps({**manifest, "base_model": "../../../../etc"}))
    result = forge_cli("export", edited, "--format", "merged", "--output", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"forge: error: {edited / 'forge.json'}: base_model "
                                                   "'../../../../etc' is a local path outside the artifact")
    assert MODEL_DIRS_ENV in lines[0] and not (tmp_path / "out").exists()
    # the run as trained loads its base (test_export_serve exports and serves it); another user, or this run on
    # another box, needs the operator's opt-in
    trained = Artifact.load(tiny_sft_run / "artifact")
    assert checked_base_model(trained) == str(Path(tiny_lm).resolve())
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-user"))
    assert "seal is not from this user" in refusal(trained)
    monkeypatch.setenv(MODEL_DIRS_ENV, str(tiny_lm))
    assert checked_base_model(trained) == str(Path(tiny_lm).resolve())
