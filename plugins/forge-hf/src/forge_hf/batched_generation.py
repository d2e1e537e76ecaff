"""Batched decoding for the torch LM server: concurrent requests share forward passes.

One engine thread runs *waves*: it takes the requests waiting (up to ``max_batch``, waiting ``max_wait_ms`` for
more), prefills their prompts together (left-padded, with an attention mask and per-row positions), then decodes one
token for every row per forward pass. A row leaves the wave when it ends (an EOS id, its own ``max_new_tokens``, or
its consumer cancelled it: a stop string, a client gone, a timeout): its KV-cache rows are dropped, so the others go
on without it. Requests arriving during a wave wait for the next one.

Per request, exactly as alone: its token budget, its EOS handling, its temperature / top-p (a per-row sampler) and its
seed (a per-row ``torch.Generator``); stop strings, incremental detokenisation and streaming stay in the HTTP layer
(:class:`forge_hf.serve_lm.TextStream`), which reads each row's tokens from :meth:`BatchedTorchBackend.stream`. Greedy
rows give the tokens they give alone, up to float rounding of padded batches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from forge_hf.serve_lm import GenerationOptions, HFTokenizerCodec, _stop_ids

_DONE = object()


@dataclass
class _Row:
    prompt_ids: list[int]
    options: GenerationOptions
    out: queue.Queue[Any] = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    produced: int = 0
    generator: Any = None


class BatchedTorchBackend(HFTokenizerCodec):
    """The torch backend with batched decoding (see the module docstring). ``stream()`` may be called from many
    threads at once: each call is one row of a wave."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 16, max_wait_ms: float = 5.0) -> None:
        super().__init__(tokenizer)
        self.model = model
        self.stop_ids = _stop_ids(model.generation_config, tokenizer)
        self.max_prompt_tokens = getattr(model.config, "max_position_embeddings", None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids, default=0)
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait_ms / 1000
        self.pending: queue.Queue[_Row] = queue.Queue()
        self.waves = 0
        self.rows_run = 0
        self.thread = threading.Thread(target=self._run, name="forge-batched-decode", daemon=True)
        self.thread.start()

    def stream(self, prompt_ids: list[int], options: GenerationOptions) -> Iterator[int]:
        row = _Row(list(prompt_ids), options)
        self.pending.put(row)
        try:
            while (item := row.out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.cancelled.set()  # closed early (stop string, client gone): the row leaves its wave

    # engine thread ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            rows = [self.pending.get()]
            deadline = time.monotonic() + self.max_wait
            while len(rows) < self.max_batch:
                try:
                    rows.append(self.pending.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            rows = [r for r in rows if not r.cancelled.is_set()]  # their consumers are gone
            if not rows:
                continue
            self._run_wave(rows)

    def _run_wave(self, rows: list[_Row]) -> None:
        """A failing wave is run again one row at a time (rows that have not produced a token yet), so one bad
        request fails alone; rows that had streamed tokens get the error."""
        try:
            self._wave(rows)
        except Exception as error:
            for r in rows:
                if len(rows) > 1 and r.produced == 0 and not r.cancelled.is_set():
                    self._run_wave([r])
                else:
                    r.out.put(error)
                    r.out.put(_DONE)

    def _sample(self, logits: Any, rows: list[_Row]) -> list[int]:
        import torch

        tokens: list[int] = []
        greedy = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            opts = row.options
            if opts.temperature <= 0:
                tokens.append(int(greedy[i]))
                continue
            scores = logits[i].float() / opts.temperature
            probs = torch.softmax(scores, dim=-1)
            if opts.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                cumulative = sorted_probs.cumsum(-1)
                drop = cumulative - sorted_probs > opts.top_p  # keep the smallest set reaching top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
                probs = probs / probs.sum()
            if row.generator is None:
                row.generator = torch.Generator(device=logits.device)
                if opts.seed is not None:
                    row.generator.manual_seed(opts.seed)
                else:
                    row.generator.seed()
            tokens.append(int(torch.multinomial(probs, 1, generator=row.generator).item()))
        return tokens

    def _wave(self, rows: list[_Row]) -> None:
        import torch
        from transformers import DynamicCache

        device = self.model.device
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        ids, mask = ids.to(device), mask.to(device)
        cache = DynamicCache()
        self.waves += 1
        self.rows_run += len(rows)
        with torch.inference_mode():
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                                use_cache=True).logits[:, -1, :]
            while True:
                tokens = self._sample(logits, rows)
                keep: list[int] = []
                for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
                    if row.cancelled.is_set():
                        row.out.put(_DONE)
                        continue
                    row.produced += 1
                    row.out.put(token)
                    if token in self.stop_ids or row.produced >= row.options.max_new_tokens:
                        row.out.put(_DONE)
                    else:
                        keep.append(i)
                if not keep:
                    return
                step = torch.tensor([tokens[i] for i in keep], dtype=torch.long, device=device)[:, None]
                if len(keep) < len(rows):
                    index = torch.tensor(keep, dtype=torch.long, device=device)
                    cache.batch_select_indices(index)
                    mask = mask[index]
                    rows = [rows[i] for i in keep]
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
                positions = mask.sum(-1, keepdim=True) - 1
                logits = self.model(input_ids=step, attention_mask=mask, position_ids=positions,
                                    past_key_values=cache, use_cache=True).logits[:, -1, :]
