"""Generation with llama.cpp (``llama-cpp-python``) for a GGUF exported by ``forge export RUN --format gguf``.

    from forge_hf.llama_cpp_runtime import LlamaCppCausalLM
    lm = LlamaCppCausalLM("runs/sft-1/exports/gguf-q8_0/model-q8_0.gguf")
    for token in lm.stream(lm.tokenize(prompt_text), max_new_tokens=64):   # greedy, stops at end-of-generation
        print(lm.detokenize([token]))

llama.cpp's own samplers do the sampling and its vocabulary decides what ends generation (EOS, EOT, EOM), so this
behaves as llama.cpp, Ollama and LM Studio will. ``llama-cpp-python`` is optional: without it, constructing the class
is a one-line error saying how to install it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from forge.errors import ForgeError

INSTALL = "pip install llama-cpp-python (builds llama.cpp from source: a few minutes and a C++ compiler)"


def available() -> str | None:
    """Why llama.cpp cannot run here, or None."""
    return None if importlib.util.find_spec("llama_cpp") else f"llama-cpp-python is not installed: {INSTALL}"


class LlamaCppCausalLM:
    """One GGUF in a ``llama_cpp.Llama`` context. ``logits_all`` keeps every position's logits (parity checks)."""

    def __init__(self, path: str | Path, n_ctx: int = 2048, threads: int | None = None,
                 logits_all: bool = False) -> None:
        reason = available()
        if reason:
            raise ForgeError(reason)
        import llama_cpp

        self.path = Path(path)
        self.version = llama_cpp.__version__
        self.llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(),
                                   n_threads_batch=threads or os.cpu_count(), logits_all=logits_all,
                                   verbose=False)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._vocab = self.llm._model.vocab  # what llama-cpp-python's own completion loop asks for end-of-generation

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as llama.cpp splits it (special tokens such as ``<|im_start|>`` recognised, no BOS
        added: chat templates write their own)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids), special=False).decode("utf-8", errors="replace")

    def is_stop(self, token: int) -> bool:
        return bool(self._is_eog(self._vocab, int(token)))

    def logits(self, ids: Sequence[int]) -> Any:
        """Logits ``[len(ids), vocab]`` for every position (needs ``logits_all=True``)."""
        if not self.llm._logits_all:
            raise ValueError("LlamaCppCausalLM(logits_all=True) is needed for per-position logits")
        self.llm.reset()
        self.llm.eval(list(ids))
        return self.llm.scores[: len(ids)].copy()

    def stream(self, prompt_ids: Sequence[int], max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
               stop_ids: Sequence[int] | None = None) -> Iterator[int]:
        """Yield new token ids: greedy at temperature 0, else llama.cpp's top-k/top-p sampler. Stops after an
        end-of-generation token (yielded; ``stop_ids`` replaces llama.cpp's own set, ``[]`` never stops) or
        ``max_new_tokens``."""
        stops = None if stop_ids is None else {int(i) for i in stop_ids}
        if seed is not None:
            self.llm.set_seed(seed)
        tokens = self.llm.generate(list(prompt_ids), temp=temperature, top_p=top_p, top_k=top_k, min_p=0.0,
                                   repeat_penalty=1.0, reset=True)
        for generated, token in enumerate(tokens, start=1):
            yield int(token)
            stop = self.is_stop(token) if stops is None else int(token) in stops
            if stop or generated >= max_new_tokens:
                return

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int = 256, **sampling: Any) -> list[int]:
        return list(self.stream(prompt_ids, max_new_tokens, **sampling))

    def close(self) -> None:
        self.llm.close()
