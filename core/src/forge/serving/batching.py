"""Micro-batching: concurrent requests are grouped (up to ``max_batch_size``, waiting at most ``max_wait_ms``)
and run through the model in one call, in a worker thread so the event loop stays free.

A request arriving while ``max_queue`` requests already wait is refused at once (:class:`forge.serving.app.QueueFull`,
answered 429 with ``Retry-After``); a request of many items (``texts``) counts once, and waits until its last item
is taken into a batch. A batch that raises is run again one item at a time, so one bad item fails
only its own request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from forge.serving.app import QueueFull

In = TypeVar("In")
Out = TypeVar("Out")


class _Waiting:
    """One admitted request: how many of its items are still in the queue."""

    __slots__ = ("items",)

    def __init__(self, items: int) -> None:
        self.items = items


class MicroBatcher(Generic[In, Out]):
    def __init__(self, run_batch: Callable[[list[In]], Sequence[Out]], max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, max_queue: int | None = None) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out], _Waiting]] | None = None
        self._waiting_requests = 0
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
        self.rejected = 0
        self.failed = 0
        self.batch_seconds = 0.05  # moving average, for Retry-After

    def depth(self) -> int:
        """Items waiting in the queue (``/metrics``); admission counts requests: :meth:`waiting_requests`."""
        return self._queue.qsize() if self._queue is not None else 0

    def waiting_requests(self) -> int:
        """Requests with at least one item still in the queue."""
        return self._waiting_requests

    def export(self, metrics: Any, prefix: str = "forge_batch") -> None:
        """Queue depth, rejections, batches and items as gauges/counters on ``/metrics``."""
        metrics.gauge(f"{prefix}_queue_depth", "items waiting for the model", self.depth)
        metrics.gauge(f"{prefix}_rejected_total", "items answered 429 because the queue was full",
                      lambda: self.rejected, kind="counter")
        metrics.gauge(f"{prefix}_batches_total", "batches run", lambda: self.batches, kind="counter")
        metrics.gauge(f"{prefix}_items_total", "items run", lambda: self.items, kind="counter")
        metrics.gauge(f"{prefix}_failed_total", "items whose prediction raised", lambda: self.failed, kind="counter")

    def _admit(self, count: int) -> _Waiting:
        if self.max_queue is not None and self._waiting_requests >= self.max_queue:
            self.rejected += count
            waits = (self.depth() + count) / self.max_batch_size + 1
            raise QueueFull(retry_after_s=waits * self.batch_seconds)
        self._waiting_requests += 1
        return _Waiting(count)

    def _taken(self, waiting: _Waiting) -> None:
        waiting.items -= 1
        if waiting.items == 0:
            self._waiting_requests -= 1

    async def submit(self, item: In) -> Out:
        return await self._enqueue(item, self._admit(1))

    async def _enqueue(self, item: In, waiting: _Waiting) -> Out:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work())
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future, waiting))  # unbounded queue: never blocks, so never left uncounted
        return await future

    async def submit_many(self, items: list[In]) -> list[Out]:
        if not items:
            return []
        waiting = self._admit(len(items))
        return list(await asyncio.gather(*(self._enqueue(i, waiting) for i in items)))

    async def _next(self) -> tuple[In, asyncio.Future[Out]]:
        assert self._queue is not None
        item, future, waiting = await self._queue.get()
        self._taken(waiting)
        return item, future

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._next()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._next(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            started = time.monotonic()
            try:
                outputs = await loop.run_in_executor(None, self.run_batch, [item for item, _ in live])
            except Exception as exc:
                if len(live) == 1:
                    self.failed += 1
                    if not live[0][1].done():
                        live[0][1].set_exception(exc)
                    continue
                await self._one_by_one(live)  # only the items that fail alone fail
                continue
            finally:
                self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * (time.monotonic() - started)
            self.batches += 1
            self.items += len(live)
            for (_, fut), out in zip(live, outputs, strict=True):
                if not fut.done():
                    fut.set_result(out)

    async def _one_by_one(self, live: list[tuple[In, asyncio.Future[Out]]]) -> None:
        loop = asyncio.get_running_loop()
        for item, fut in live:
            try:
                (out,) = await loop.run_in_executor(None, self.run_batch, [item])
            except Exception as exc:
                self.failed += 1
                if not fut.done():
                    fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += 1
            if not fut.done():
                fut.set_result(out)
