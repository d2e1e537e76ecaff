"""Micro-batching: concurrent requests are grouped (up to ``max_batch_size``, waiting at most ``max_wait_ms``)
and run through the model in one call, in a worker thread so the event loop stays free."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(self, run_batch: Callable[[list[In]], Sequence[Out]], max_batch_size: int = 16,
                 max_wait_ms: float = 5.0) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: In) -> Out:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work())
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def submit_many(self, items: list[In]) -> list[Out]:
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                outputs = await loop.run_in_executor(None, self.run_batch, [item for item, _ in live])
            except Exception as exc:  # hand the failure to every waiting request
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, fut), out in zip(live, outputs, strict=True):
                if not fut.done():
                    fut.set_result(out)
