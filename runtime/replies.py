"""How results reach the callers that wait for them: one pub/sub channel per API process.

An API process that has callers waiting (``POST /v1/requests?wait=S``, ``POST /agent/process``)
subscribes to its own reply channel, ``{prefix}:{namespace}:{agent}:results:{instance}``, and
names it in the entries it enqueues; a worker PUBLISHes a result there in the same script that
stores it (:meth:`pilothouse.runtime.queue.WorkQueue.answer`). One subscription per process,
one message per answer, whatever the number of replicas. Pub/sub is at-most-once, so a waiter
that times out, and every waiter after the subscription reconnects, also reads the stored
state: a result is never missed, only learnt later. Used by :mod:`pilothouse.runtime.api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from pilothouse.runtime import config, envelopes, queue

__all__ = ["LISTEN_POLL_SECONDS", "ResultWaiter"]

log = logging.getLogger(__name__)

LISTEN_POLL_SECONDS: Final = 1.0
"""Longest one wait for a message (the subscription loop's tick)."""


class ResultWaiter:
    """Delivers results to the callers of one API process that wait for them.

    The process subscribes to its own reply channel (entries carry its name); workers PUBLISH
    a result there when they store it. Pub/sub is at-most-once, so a waiter that times out, and
    every waiter after the subscription reconnects, also reads the stored state: a result is
    never missed, only learnt a little later.
    """

    def __init__(self, redis: aioredis.Redis, cfg: config.RuntimeConfig, *, instance: str) -> None:
        self.redis = redis
        self.cfg = cfg
        self.channel = queue.reply_channel(cfg, instance)
        self._waiting: dict[str, list[asyncio.Future[bytes]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Callers waiting right now (a gauge of load, and a check that none is leaked)."""
        return sum(len(f) for f in self._waiting.values())

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def start(self, *, within: float = 5.0) -> None:
        self._task = asyncio.create_task(self._listen(), name=f"result-waiter:{self.channel}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), within)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for futures in self._waiting.values():
            for f in futures:
                f.cancel()
        self._waiting.clear()

    def expect(self, request_id: str) -> asyncio.Future[bytes]:
        """A future that receives the result JSON of ``request_id``; register before enqueueing."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request_id, []).append(fut)
        return fut

    def forget(self, request_id: str, fut: asyncio.Future[bytes]) -> None:
        futures = self._waiting.get(request_id)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(fut)
        if not futures:
            del self._waiting[request_id]

    async def wait(
        self, request_id: str, fut: asyncio.Future[bytes], within: float
    ) -> bytes | None:
        """The result JSON if it arrives within ``within`` seconds, else None (after a last look
        at the stored state). Without Redis for that last look, None: the request was accepted,
        so its caller is told its id (202), never that nothing was accepted (503)."""
        try:
            if within > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(within):
                        return await asyncio.shield(fut)
            if fut.done() and not fut.cancelled():
                return fut.result()
            try:
                state = await self._read_state(request_id)
            except (queue.QueueUnavailable, queue.QueueError) as e:
                log.warning("cannot read the state of a waited-for request: %s", e)
                return None
            return state.result_json if state and state.state == "done" else None
        finally:
            self.forget(request_id, fut)

    async def _read_state(self, request_id: str) -> envelopes.RequestState | None:
        return await queue.read_state(self.redis, self.cfg, request_id)

    def _deliver(self, data: bytes) -> None:
        rid, _, value = data.partition(b" ")
        futures = self._waiting.pop(rid.decode(errors="replace"), None)
        if not futures:
            return
        result = value[1:] if value[:1] == envelopes.DONE else value
        for f in futures:
            if not f.done():
                f.set_result(result)

    async def _sweep(self) -> None:
        """After (re)subscribing: answer waiters whose result was published meanwhile."""
        for rid in list(self._waiting):
            with contextlib.suppress(queue.QueueUnavailable):
                state = await self._read_state(rid)
                if state is not None and state.state == "done" and state.result_json is not None:
                    self._deliver(rid.encode() + b" " + envelopes.DONE + state.result_json)

    async def _listen(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                backoff = 0.05
                await self._sweep()
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=LISTEN_POLL_SECONDS
                    )
                    if message is not None and message.get("type") == "message":
                        self._deliver(envelopes.to_bytes(message["data"]))
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
                self._subscribed.clear()
                log.warning("result subscription lost, reconnecting: %s", e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
