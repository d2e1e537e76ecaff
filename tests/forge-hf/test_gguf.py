"""GGUF export: the file written with the gguf package loads back in transformers (and llama.cpp when installed)
with the same logits, tokenizer, chat template and stop token; parity gates refuse and leave nothing behind."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest


def manifest(path: Path) -> dict:
    return json.loads((path / "forge.json").read_text())


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def causal_lm_artifact(path: Path, architecture: str) -> Path:
    """A tiny causal-lm artifact directory (weights + tokenizer + manifest)."""
    from tiny_models import make_tiny_causal_lm

    make_tiny_causal_lm(path, architecture)
    (path / "forge.json").write_text(json.dumps({"schema": 1, "type": "artifact", "kind": "causal-lm"}))
    return path


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3"])
def test_architectures_round_trip_through_transformers(tmp_path, architecture):
    """Tensor names, the Llama q/k permutation, Qwen2 biases and untied head, Qwen3 q/k norms and head_dim: an f32
    GGUF read back by transformers gives the source model's logits exactly; q8_0 stays close."""
    import forge
    import torch
    from forge_hf.causal_lm import load_causal_lm
    from forge_hf.export_gguf import reload_with_transformers
    from forge_hf.gguf_file import write_gguf
    from gguf import GGUFReader

    lm = load_causal_lm(forge.Artifact.load(causal_lm_artifact(tmp_path / "lm", architecture)))
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": "the capital of spain"}],
                                           add_generation_prompt=True, tokenize=False)
    tokens = torch.tensor([lm.tokenizer(ids, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        expected = lm.model(tokens).logits
    for quantize, bound in (("f32", 1e-5), ("q8_0", 0.05)):
        path = tmp_path / f"{architecture}-{quantize}.gguf"
        written = write_gguf(lm.model, lm.tokenizer, lm.generation_config, path, quantize, name="tiny",
                             eos_token_ids=lm.eos_token_ids)
        model, tokenizer = reload_with_transformers(path)
        with torch.inference_mode():
            assert float((model(tokens).logits - expected).abs().max()) < bound
        assert tokenizer(ids, add_special_tokens=False)["input_ids"] == tokens[0].tolist()
        fields = GGUFReader(path).fields
        assert fields["general.architecture"].contents() == architecture
        assert fields["tokenizer.chat_template"].contents() == lm.tokenizer.chat_template
        assert fields["tokenizer.ggml.eos_token_id"].contents() == lm.tokenizer.eos_token_id
        # the tokenizer class transformers picks for the model type decides the split regex (Qwen2's for qwen2)
        assert written["tokenizer_pre"] == ("qwen2" if architecture == "qwen2" else "gpt-2")
        assert fields["tokenizer.ggml.model"].contents() == "gpt2"
        assert fields["tokenizer.ggml.pre"].contents() == written["tokenizer_pre"]
    if architecture == "qwen3":
        assert fields["qwen3.attention.key_length"].contents() == 16  # head_dim apart from hidden/heads
    assert written["tensor_types"]["Q8_0"] > 0 and written["tensor_types"]["F32"] > 0  # norms stay F32


def test_gguf_export_of_a_lora_run(forge_cli, tiny_sft_run):
    """forge export RUN --format gguf: adapter merged in memory, parity figures in the manifest, Modelfile."""
    out = forge_cli.cwd / "gguf"
    forge_cli("export", tiny_sft_run, "--format", "gguf", "--quantize", "q8_0", "-o", out, check=True)
    m = manifest(out)
    assert m["kind"] == "gguf-causal-lm" and m["exporter"] == "forge-hf:gguf" and m["quantization"] == "q8_0"
    assert m["parent"]["kind"] == "causal-lm-adapter" and m["merged_from"] == "lora merged in memory"
    parity = m["parity"]
    assert parity["prompt_source"].startswith("heldout.jsonl")
    figures = parity["transformers"]
    assert figures["prompts"] >= 1 and figures["positions"] > 0 and figures["tokenizer_match"] == 1.0
    assert figures["token_agreement"] >= parity["min_token_agreement"] == 0.9
    assert figures["eos_kept"] == figures["eos_reference"]
    if importlib.util.find_spec("llama_cpp") is None:
        assert "not installed" in parity["llama_cpp"]["skipped"]
    else:
        assert parity["llama_cpp"]["token_agreement"] >= 0.95
    assert sorted(f["path"] for f in m["files"]) == ["Modelfile", "model-q8_0.gguf"]
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./model-q8_0.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert m["gguf"]["special_token_ids"]["eos"] == m["gguf"]["special_token_ids"]["bos"] + 1  # <|im_end|>
    assert m["gguf"]["chat_template"] is True


def test_parity_gates_refuse_and_leave_nothing(forge_cli, tiny_sft_run):
    exports = tiny_sft_run / "exports"
    before = leftovers(exports)
    tight = forge_cli("export", tiny_sft_run, "--format", "gguf", "--quantize", "f16", "--set", "tolerance=1e-12")
    assert tight.returncode == 2  # (loading progress bars come before the one error line)
    assert tight.stderr.strip().splitlines()[-1].startswith(
        "forge: error: gguf parity (transformers): max abs logit difference")
    assert "> tolerance 1e-12 (f16)" in tight.stderr and "Traceback" not in tight.stderr
    strict = forge_cli("export", tiny_sft_run, "--format", "gguf", "--quantize", "q4_0",
                       "--set", "min_token_agreement=1.01")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr  # refused before exporting: a share is <= 1
    assert "min_token_agreement" in strict.stderr and "less than or equal to 1" in strict.stderr
    assert leftovers(exports) == before  # neither the target nor a staging directory


def test_bad_input_is_one_line_exit_2(forge_cli, tiny_sft_run, tmp_path):
    def fails(*args: str) -> str:
        result = forge_cli("export", *args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("forge: error: "), result.stderr
        return lines[0]

    assert "--quantize q3_k: quantize: Input should be 'f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0' or " \
        "'q5_1'" in fails(
        tiny_sft_run, "--format", "gguf", "--quantize", "q3_k", "-o", tmp_path / "a")
    assert "--set bits=4: bits: unknown key" in fails(tiny_sft_run, "--format", "gguf", "--set", "bits=4",
                                                          "-o", tmp_path / "b")
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    (classifier / "forge.json").write_text(json.dumps({"type": "artifact", "kind": "sequence-classifier"}))
    assert "does not take sequence-classifier artifacts" in fails(classifier, "--format", "gguf")
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(gpt2)
    (gpt2 / "forge.json").write_text(json.dumps({"type": "artifact", "kind": "causal-lm"}))
    assert fails(gpt2, "--format", "gguf", "-o", tmp_path / "c") == (
        "forge: error: gguf export: architecture 'gpt2' is not supported; supported: llama (llama), qwen2 (qwen2), "
        "qwen3 (qwen3)")
    running = tmp_path / "running"
    running.mkdir()
    (running / "forge.json").write_text(json.dumps({"type": "run", "status": "running"}))
    assert "run is running, not completed" in fails(running, "--format", "gguf")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert "already exists and is not empty" in fails(tiny_sft_run, "--format", "gguf", "-o", taken)
    assert leftovers(taken) == ["keep.txt"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_eos_gate(tmp_path):
    """An export whose greedy generation runs past the EOS the merged model stops at is refused."""
    import forge
    from forge_hf.causal_lm import Continuation, Prompt
    from forge_hf.export_gguf import compare, enforce

    prompts = [Prompt(ids=[1, 2], full_ids=None, text="x"), Prompt(ids=[3], full_ids=None, text="y")]
    expected = [Continuation(tokens=[5, 9], stopped_at_eos=True), Continuation(tokens=[6, 6], stopped_at_eos=False)]

    def next_token_logits(ids: list[int]) -> np.ndarray:  # a "model" that predicts exactly the given sequence
        return np.eye(10)[[*ids[1:], 0]]

    reference = [next_token_logits(p.ids + e.tokens) for p, e in zip(prompts, expected, strict=True)]
    figures = compare("test", expected, prompts, next_token_logits, lambda ids, budget: [5] * budget, reference,
                      [True, True], lambda token: token == 9)
    assert figures["token_agreement"] == 1.0 and figures["eos_reference"] == 1 and figures["eos_kept"] == 0
    limit = {"tolerance": 1.0, "min_token_agreement": 0.9, "require_eos": True, "gates_logits": True}
    with pytest.raises(forge.ForgeError, match="no longer ends with EOS on 1 of 1 held-out prompts"):
        enforce(figures, limit, "q4_0")
    enforce(figures, {**limit, "require_eos": False}, "q4_0")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (make llama-cpp builds it)")
def test_llama_cpp_runs_the_gguf(tmp_path):
    """llama.cpp itself reads the file: same tokens for a chat prompt, same logits as the source model (f16
    rounding), greedy streaming stops at an end-of-generation token."""
    import forge
    import torch
    from forge_hf.causal_lm import load_causal_lm
    from forge_hf.gguf_file import write_gguf
    from forge_hf.llama_cpp_runtime import LlamaCppCausalLM

    lm = load_causal_lm(forge.Artifact.load(causal_lm_artifact(tmp_path / "lm", "llama")))
    path = tmp_path / "tiny-f16.gguf"
    write_gguf(lm.model, lm.tokenizer, lm.generation_config, path, "f16", name="tiny", eos_token_ids=lm.eos_token_ids)
    text = lm.tokenizer.apply_chat_template([{"role": "user", "content": "what is the capital of peru?"}],
                                            add_generation_prompt=True, tokenize=False)
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    runtime = LlamaCppCausalLM(path, n_ctx=128, logits_all=True)
    try:
        assert runtime.tokenize(text) == ids
        with torch.inference_mode():
            expected = lm.model(torch.tensor([ids])).logits[0].numpy()
        assert float(np.abs(runtime.logits(ids) - expected).max()) < 1e-2
        greedy = runtime.generate(ids, max_new_tokens=12)
        with torch.inference_mode():
            reference = lm.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):]
        assert greedy == reference.tolist()[:len(greedy)]
        assert runtime.is_stop(lm.tokenizer.eos_token_id) and not runtime.is_stop(ids[1])
        sampled = runtime.generate(ids, max_new_tokens=8, temperature=0.9, top_p=0.9, seed=3)
        assert sampled == runtime.generate(ids, max_new_tokens=8, temperature=0.9, top_p=0.9, seed=3)
    finally:
        runtime.close()


@pytest.mark.slow
def test_smollm_q8_0_gguf_passes_parity(forge_cli, smollm_sft_run):
    """make demo's run (shortened) → GGUF q8_0 → loads back and passes parity, EOS kept on every held-out prompt."""
    forge_cli("export", smollm_sft_run, "--format", "gguf", "--quantize", "q8_0", check=True, timeout=900)
    m = manifest(smollm_sft_run / "exports" / "gguf-q8_0")
    figures = m["parity"]["transformers"]
    assert figures["tokenizer_match"] == 1.0 and figures["token_agreement"] >= 0.9
    assert figures["eos_reference"] > 0 and figures["eos_kept"] == figures["eos_reference"]
    assert m["gguf"]["architecture"] == "llama" and m["gguf"]["tensor_types"]["Q8_0"] > 200
    if importlib.util.find_spec("llama_cpp") is not None:
        cpp = m["parity"]["llama_cpp"]
        assert cpp["tokenizer_match"] == 1.0 and cpp["token_agreement"] >= 0.9
        assert cpp["eos_kept"] == cpp["eos_reference"]
