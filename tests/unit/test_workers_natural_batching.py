"""Natural batching: a lone item is sent at once, items arriving during a send go together in
the next one, results go back to their callers in order, and a failed send fails its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pilothouse.runtime import batching


class Backend:
    """Records the batches it is sent; each send waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.sent = asyncio.Event()
        self.fail_next = False

    async def send(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.sent.set()
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("backend down")
        return [i * 10 for i in items]


async def test_a_lone_item_goes_at_once_and_later_ones_share_the_next_send() -> None:
    backend = Backend()
    b: batching.Batcher[int, int] = batching.Batcher(backend.send, name="test-batcher")
    b.start()
    try:
        first = asyncio.create_task(b.submit(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert backend.batches == [[1]]  # sent without waiting for company
        rest = [asyncio.create_task(b.submit(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        backend.gate.set()
        assert await first == 10
        assert [await t for t in rest] == [20, 30, 40]
        assert backend.batches == [[1], [2, 3, 4]]
    finally:
        await b.stop()


async def test_batches_are_bounded() -> None:
    backend = Backend()
    backend.gate.set()
    b: batching.Batcher[int, int] = batching.Batcher(backend.send, name="test-batcher", max_batch=2)
    b.start()
    try:
        results = await asyncio.gather(*(b.submit(i) for i in range(5)))
        assert results == [0, 10, 20, 30, 40]
        assert all(len(batch) <= 2 for batch in backend.batches)
    finally:
        await b.stop()


async def test_a_failed_send_fails_its_callers_and_the_next_batch_goes_on() -> None:
    backend = Backend()
    backend.fail_next = True
    b: batching.Batcher[int, int] = batching.Batcher(backend.send, name="test-batcher")
    b.start()
    try:
        doomed = asyncio.create_task(b.submit(1))
        await asyncio.sleep(0)
        backend.gate.set()
        with pytest.raises(ConnectionError):
            await doomed
        assert await b.submit(2) == 20
    finally:
        await b.stop()


async def test_stopping_cancels_waiting_and_sending_callers() -> None:
    backend = Backend()
    b: batching.Batcher[int, int] = batching.Batcher(backend.send, name="test-batcher")
    b.start()
    sending = asyncio.create_task(b.submit(1))
    await backend.sent.wait()
    waiting = asyncio.create_task(b.submit(2))
    await asyncio.sleep(0)
    await b.stop()
    for caller in (sending, waiting):
        with pytest.raises(asyncio.CancelledError):
            await caller
