"""Generation with ONNX Runtime for a causal LM exported by ``forge export RUN --format onnx`` (a decoder with KV
cache: ``input_ids``, ``attention_mask``, ``position_ids`` and one ``past_key_values`` key/value per layer in, logits
and the grown cache out; an empty cache makes the same graph run the prompt).

    from forge_onnx.lm_runtime import OnnxCausalLM
    lm = OnnxCausalLM("runs/sft-1/exports/onnx-int8")
    for token in lm.stream(prompt_ids, max_new_tokens=64):               # greedy, stops at EOS
        print(token)
    text_ids = lm.generate(prompt_ids, temperature=0.7, top_p=0.9, seed=1)

Only numpy and onnxruntime: a server engine calls :meth:`OnnxCausalLM.stream` and tokenizes with the
``tokenizer.json`` beside the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.onnx"


def _stop_ids(directory: Path) -> list[int]:
    """EOS ids from ``generation_config.json`` (what the fine-tuned model stops at), else ``config.json``."""
    for name in ("generation_config.json", "config.json"):
        file = directory / name
        if file.is_file():
            value = json.loads(file.read_text(encoding="utf-8")).get("eos_token_id")
            if value is not None:
                return [int(v) for v in (value if isinstance(value, list) else [value])]
    return []


class OnnxCausalLM:
    """An exported decoder in one ``onnxruntime.InferenceSession`` (explicit threads, no spinning), generating one
    sequence at a time with its KV cache kept between steps."""

    def __init__(self, directory: str | Path, threads: int = 0, session: Any = None, io_binding: bool = False
                 ) -> None:
        from forge_onnx.export import session as make_session

        self.directory = Path(directory)
        self.session = session or make_session(self.directory / MODEL_FILE, threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [name for name in inputs if "past_key_values" in name]
        outputs = [o.name for o in self.session.get_outputs()]
        self.present_names = [name for name in outputs if "past_key_values" in name]
        if len(self.past_names) != len(self.present_names) or "logits" not in outputs:
            raise ValueError(f"{self.directory / MODEL_FILE}: not a decoder with KV cache "
                             f"(inputs {list(inputs)}, outputs {outputs})")
        # the static cache dims (kv heads, head dim) come from the graph; batch and length are symbolic
        # (the dynamo exporter may name a fixed dim by its value, "8", rather than give the int)
        self.cache_shapes = {}
        for name in self.past_names:
            shape = [int(d) if isinstance(d, int) or str(d).isdigit() else None for d in inputs[name].shape]
            if shape[1] is None or shape[3] is None:
                raise ValueError(f"{self.directory / MODEL_FILE}: cache input {name} has no static head dims "
                                 f"{inputs[name].shape}")
            self.cache_shapes[name] = shape
        self.cache_dtype = np.float16 if "float16" in inputs[self.past_names[0]].type else np.float32
        self.has_attention_mask = "attention_mask" in inputs
        self.has_position_ids = "position_ids" in inputs
        self.stop_ids = _stop_ids(self.directory)
        self.output_names = outputs
        self.io_binding = io_binding

    def empty_cache(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {name: np.zeros((batch, int(shape[1] or 0), 0, int(shape[3] or 0)), dtype=self.cache_dtype)
                for name, shape in self.cache_shapes.items()}

    def forward(self, ids: Sequence[int], cache: dict[str, Any], past_length: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Run ``ids`` after ``past_length`` cached tokens; return their logits ``[len(ids), vocab]`` and the cache.

        With ``io_binding`` the cache goes in and comes out as onnxruntime ``OrtValue``s (numpy arrays are accepted
        too), not copied into numpy arrays between steps; measured no faster than ``session.run`` on SmolLM2-135M
        (docs/benchmarks.md), so it is off by default."""
        tokens = np.asarray([list(ids)], dtype=np.int64)
        if not self.io_binding:
            feed: dict[str, Any] = {"input_ids": tokens, **{k: _numpy(v) for k, v in cache.items()}}
            feed.update(self._positions(tokens.shape[1], past_length))
            outputs = self.session.run(None, feed)
            result = dict(zip(self.output_names, outputs, strict=True))
            new_cache = {past: result[present] for past, present in zip(self.past_names, self.present_names,
                                                                        strict=True)}
            return result["logits"][0], new_cache
        binding = self.session.io_binding()
        positions = self._positions(tokens.shape[1], past_length)  # kept referenced until the run is over
        binding.bind_cpu_input("input_ids", tokens)
        for name, array in positions.items():
            binding.bind_cpu_input(name, array)
        for name, value in cache.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        values = dict(zip(self.output_names, binding.get_outputs(), strict=True))
        new_cache = {past: values[present] for past, present in zip(self.past_names, self.present_names, strict=True)}
        return values["logits"].numpy()[0], new_cache

    def _positions(self, count: int, past_length: int) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {}
        if self.has_attention_mask:
            feed["attention_mask"] = np.ones((1, past_length + count), dtype=np.int64)
        if self.has_position_ids:
            feed["position_ids"] = np.arange(past_length, past_length + count, dtype=np.int64)[None]
        return feed

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits for every position of ``ids`` (one pass, empty cache)."""
        return self.forward(ids, self.empty_cache(), 0)[0]

    def stream(self, prompt_ids: Sequence[int], max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
               stop_ids: Sequence[int] | None = None) -> Iterator[int]:
        """Yield new token ids one at a time: greedy when ``temperature`` is 0, else sampled (top-k, then top-p).
        Stops after an EOS id (which is yielded) or ``max_new_tokens``."""
        stops = set(self.stop_ids if stop_ids is None else stop_ids)
        rng = np.random.default_rng(seed)
        logits, cache = self.forward(prompt_ids, self.empty_cache(), 0)
        length = len(prompt_ids)
        for _ in range(max_new_tokens):
            token = choose(logits[-1], temperature, top_p, top_k, rng)
            yield token
            if token in stops:
                return
            logits, cache = self.forward([token], cache, length)
            length += 1

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int = 256, **sampling: Any) -> list[int]:
        return list(self.stream(prompt_ids, max_new_tokens, **sampling))


def _numpy(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.numpy()


def choose(logits: np.ndarray, temperature: float, top_p: float, top_k: int, rng: np.random.Generator) -> int:
    """The next token from one row of logits: argmax at temperature 0, else a sample restricted by top-k/top-p."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    order = np.argsort(-scaled)
    if top_k > 0:
        order = order[:top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(order, p=probs))
