"""Natural batching: concurrent callers' items go to the backend together, at no added delay.

Why: the worker pool stores and acknowledges results in Redis for N concurrent requests; one
round trip per request costs client CPU and Redis time that one round trip per *batch* does
not. A :class:`Batcher` sends whatever is waiting as soon as the previous send returned: a lone
caller is sent at once (no timer, no added latency), and under load each send carries every
caller that arrived meanwhile. Used by :mod:`pilothouse.runtime.workers`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

__all__ = ["DEFAULT_MAX_BATCH", "Batcher"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_BATCH: Final = 256
"""Most items in one send."""


class Batcher(Generic[T, R]):
    """Calls ``send(items) -> results`` (one result per item, in order) for batches of items
    submitted with :meth:`submit`; a failed send fails every caller of that batch."""

    def __init__(
        self,
        send: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._send = send
        self._name = name
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._sending: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop sending; callers still waiting are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, fut in self._pending + self._sending:
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        self._sending = []

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                live = self._sending = [(item, fut) for item, fut in batch if not fut.done()]
                if not live:
                    continue
                try:
                    results = await self._send([item for item, _ in live])
                except Exception as e:
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), result in zip(live, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
