"""Batched decoding (forge_hf.batched_generation) on the tiny random Llama: rows decoded together give what each
request gives alone (greedy tokens equal to transformers' generate, per-request budgets, seeded sampling
reproducible whatever else is in the wave), and a row closed early leaves its wave."""

from __future__ import annotations

import threading

import pytest
from forge_hf.serve_lm import GenerationOptions


@pytest.fixture(scope="module")
def backend(tiny_lm):
    from forge_hf.batched_generation import BatchedTorchBackend
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    return BatchedTorchBackend(model, tokenizer, max_batch=8, max_wait_ms=50)


def together(backend, jobs):
    """Run ``(prompt_ids, options)`` jobs at once (one thread each, as the server does); their token lists."""
    out: list[list[int]] = [[] for _ in jobs]

    def one(i, prompt, options):
        out[i] = list(backend.stream(prompt, options))

    threads = [threading.Thread(target=one, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_greedy_rows_match_generate_alone_with_their_own_budgets(backend):
    import torch

    prompts = ["hello", "what is the capital of france? tell me", "a", "one two three four five six"]
    budgets = [5, 12, 1, 8]
    jobs = [(backend.encode_text(p), GenerationOptions(max_new_tokens=n))
            for p, n in zip(prompts, budgets, strict=True)]
    waves_before = backend.waves
    batched = together(backend, jobs)
    assert backend.waves - waves_before < len(jobs)  # shared forward passes
    for (prompt, options), tokens in zip(jobs, batched, strict=True):
        ids = torch.tensor([prompt])
        alone = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=options.max_new_tokens, eos_token_id=sorted(backend.stop_ids),
                                       pad_token_id=backend.pad_id)[0, len(prompt):].tolist()
        assert tokens == alone and len(tokens) <= options.max_new_tokens
        assert len(tokens) == options.max_new_tokens or tokens[-1] in backend.stop_ids


def test_seeded_sampling_is_the_same_alone_and_in_a_wave(backend):
    prompt = backend.encode_text("tell me a story")
    sampled = GenerationOptions(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    alone = list(backend.stream(prompt, sampled))
    others = [(backend.encode_text(f"noise {i}"), GenerationOptions(max_new_tokens=6, temperature=0.8, seed=i))
              for i in range(4)]
    in_wave = together(backend, [(prompt, sampled), *others])[0]
    assert in_wave == alone and len(alone) >= 1


def test_a_closed_row_leaves_the_wave_and_others_finish(backend):
    long = GenerationOptions(max_new_tokens=40)
    stream = backend.stream(backend.encode_text("first"), long)
    first = next(stream)
    stream.close()  # e.g. a stop string or a client gone
    assert isinstance(first, int)
    tokens = list(backend.stream(backend.encode_text("second"), GenerationOptions(max_new_tokens=3)))
    assert 1 <= len(tokens) <= 3
