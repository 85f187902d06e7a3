"""Live progress of a request: the worker announces each step as it starts; streams relay it.

The worker that runs a request and the API process that streams it to a caller are often
different pods. Before each action the agent loop asks its policy hook about (the request's
admission, each LLM call, each tool call), :class:`pilothouse.runtime.cancellations.
CancellableHook` PUBLISHes an event on the request's channel,
``{prefix}:{namespace}:{agent}:progress:{id}``, in the same round trip as its cancel-mark
check. Streams (``POST /v1/chat/completions`` with ``stream: true``,
``GET /v1/requests/{id}/events``) hold a :class:`Subscription` to it while they wait for the
result. Pub/sub is at-most-once and keeps nothing: a caller sees the steps that start while
it listens, and the outcome events derived from the stored result in any case.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from pilothouse.runtime import config, envelopes, hooks, queue

__all__ = ["Subscription", "channel", "started_event"]

log = logging.getLogger(__name__)


def channel(cfg: config.RuntimeConfig, request_id: str) -> str:
    """The pub/sub channel of one request's progress."""
    return f"{queue.key_base(cfg)}:progress:{request_id}"


def started_event(action: hooks.Action) -> dict[str, Any]:
    """The event announcing ``action``: ``started`` (a worker took the request),
    ``llm_call_started`` or ``tool_call_started`` (with the tool and its arguments)."""
    if action.kind is hooks.ActionKind.REQUEST:
        return {"type": "started"}
    if action.kind is hooks.ActionKind.LLM_CALL:
        return {"type": "llm_call_started", "step": action.step}
    return {
        "type": "tool_call_started",
        "step": action.step,
        "tool": action.tool_name,
        "params": dict(action.params),
    }


class Subscription:
    """One stream's subscription to a request's progress. Open it before enqueueing (so no
    early step is missed) and close it when the stream ends. Without Redis it yields nothing:
    progress is a courtesy, the result is read from the stored state."""

    def __init__(self, redis: aioredis.Redis, cfg: config.RuntimeConfig, request_id: str) -> None:
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._channel = channel(cfg, request_id)
        self._open = False

    async def open(self) -> None:
        try:
            await self._pubsub.subscribe(self._channel)
            self._open = True
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            log.warning("progress of %s not followed: %s", self._channel, e)

    async def next(self, within: float) -> dict[str, Any] | None:
        """The next event if one comes within ``within`` seconds, else None."""
        if not self._open:
            return None
        try:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=within)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            log.warning("progress of %s lost: %s", self._channel, e)
            self._open = False
            return None
        if message is None or message.get("type") != "message":
            return None
        try:
            event = orjson.loads(envelopes.to_bytes(message["data"]))
        except orjson.JSONDecodeError:
            return None
        return event if isinstance(event, dict) else None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
