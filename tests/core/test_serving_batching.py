"""MicroBatcher: a failing batch fails only the items that fail alone; a full queue refuses at once (429)."""

from __future__ import annotations

import asyncio
import threading

from forge.serving.app import QueueFull
from forge.serving.batching import MicroBatcher


def test_one_bad_item_fails_only_its_own_request():
    def run(items: list[str]) -> list[str]:
        if "bad" in items:
            raise ValueError("cannot encode")
        return [i.upper() for i in items]

    async def main() -> list[object]:
        batcher: MicroBatcher[str, str] = MicroBatcher(run, max_batch_size=16, max_wait_ms=50)
        return await asyncio.gather(*(batcher.submit(t) for t in ["a", "bad", "c", "d"]), return_exceptions=True)

    out = asyncio.run(main())
    assert out[0] == "A" and out[2:] == ["C", "D"] and isinstance(out[1], ValueError)


def test_a_full_queue_refuses_with_retry_after():
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        gate.wait(5)
        return items

    async def main() -> tuple[list[object], int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch_size=1, max_wait_ms=0, max_queue=2)
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True), batcher.rejected

    out, rejected = asyncio.run(main())
    refused = [o for o in out if isinstance(o, QueueFull)]
    assert refused and rejected == len(refused) and all(r.retry_after_s > 0 for r in refused)
    assert all(o == i for i, o in enumerate(out) if not isinstance(o, QueueFull))


def test_batch_size_is_the_flag_when_given_else_the_servers_own_default():
    from forge.serving.settings import DEFAULT_LM_BATCH_SIZE, ServeSettings

    assert ServeSettings().batch_size() == 16
    assert ServeSettings().batch_size(DEFAULT_LM_BATCH_SIZE) == 64
    assert ServeSettings(max_batch_size=1).batch_size(DEFAULT_LM_BATCH_SIZE) == 1  # --max-batch-size 1 still wins


def test_the_queue_bound_counts_requests_not_items():
    """``--max-queue`` is a number of requests: one ``texts`` request of many items counts once, so a list longer
    than the bound is admitted, and 429 comes only when that many requests wait."""
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        gate.wait(5)
        return [i * 10 for i in items]

    async def main() -> tuple[list[object], int, int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch_size=4, max_wait_ms=0, max_queue=2)
        first = asyncio.create_task(batcher.submit_many(list(range(10))))  # 10 items, one request
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit_many([7, 8]))
        await asyncio.sleep(0.05)
        waiting = batcher.waiting_requests()
        third = asyncio.create_task(batcher.submit(5))  # two requests already wait: refused
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(first, second, third, return_exceptions=True)), waiting, \
            batcher.waiting_requests()

    (first, second, third), waiting, after = asyncio.run(main())
    assert first == [i * 10 for i in range(10)] and second == [70, 80]
    assert waiting == 2 and isinstance(third, QueueFull) and after == 0
