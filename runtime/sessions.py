"""Multi-turn sessions in Redis: the message history and a context dict per session id.

Why: "I want to return my order" / "The order number is 12345" / "Yes, that's correct" only
works if the third request sees the first two, whichever replica serves it. A session is two
keys in the same hash slot (so a Redis Cluster can run the MULTI):

* ``<prefix>:session:{<namespace>/<agent>/<session>}:messages``: a list, one JSON message per
  element, trimmed to the last ``maxMessages``;
* ``<prefix>:session:{<namespace>/<agent>/<session>}:context``: a JSON object (what tools
  learned: ``{"return_initiated": true}``), at most ``maxContextBytes`` serialised.

Both expire ``ttlSeconds`` after the last write. :meth:`SessionStore.load` is one pipelined round
trip, :meth:`SessionStore.save` one MULTI/EXEC. History read back never starts in the middle of
a tool exchange: leading messages are dropped until the first user message, so a trimmed list
is still a valid conversation for the model. Messages are stored normalised
(:mod:`pilothouse.runtime.conversations`: ``content`` always a string). Called by
:mod:`pilothouse.runtime.agent`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from pilothouse.runtime import config, conversations, errors

__all__ = ["Session", "SessionStore", "merge_context", "usable_history"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 1.0
"""Longest a session read or write waits for Redis; then the loop goes on without it."""


@dataclass(frozen=True, slots=True)
class Session:
    """A session as loaded: its history (oldest first) and context."""

    id: str
    messages: tuple[dict[str, Any], ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


def usable_history(messages: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The messages from the first user message on (a trim may have cut a tool exchange)."""
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            return tuple(messages[i:])
    return ()


def merge_context(
    current: Mapping[str, Any], updates: Mapping[str, Any], max_bytes: int
) -> tuple[dict[str, Any], str | None]:
    """``current`` updated with ``updates``; if that exceeds ``max_bytes`` serialised (or is
    not JSON), ``current`` unchanged and the reason."""
    if not updates:
        return dict(current), None
    merged = {**current, **updates}
    try:
        size = len(orjson.dumps(merged))
    except TypeError as e:
        return dict(current), f"context update is not JSON-serialisable: {e}"
    if size > max_bytes:
        return dict(current), (
            f"context update dropped: the session context would be {size} bytes, "
            f"more than maxContextBytes={max_bytes}"
        )
    return merged, None


def _json(raw: Any) -> Any:
    return orjson.loads(raw) if raw else None


class SessionStore:
    """Reads and writes the sessions of one agent."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        settings: config.SessionConfig,
        *,
        key_prefix: str,
        namespace: str,
        agent: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._redis = redis_client
        self.settings = settings
        self._timeout = timeout
        self._prefix = f"{key_prefix}:session:{{{namespace}/{agent}/"

    def keys(self, session_id: str) -> tuple[str, str]:
        """The (messages, context) keys of a session."""
        base = f"{self._prefix}{session_id}}}"
        return f"{base}:messages", f"{base}:context"

    async def load(self, session_id: str) -> Session:
        """History and context; an unknown session is empty.

        Raises :class:`errors.DependencyUnavailable` when Redis does not answer in time."""
        messages_key, context_key = self.keys(session_id)
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._redis.pipeline(transaction=False) as pipe,
            ):
                pipe.lrange(messages_key, -self.settings.max_messages, -1)
                pipe.get(context_key)
                raw_messages, raw_context = await pipe.execute()
        except (aioredis.RedisError, OSError, TimeoutError) as e:
            raise errors.DependencyUnavailable(f"session {session_id}: Redis: {e}") from e
        try:
            messages = [orjson.loads(m) for m in raw_messages]
            context = _json(raw_context) or {}
        except orjson.JSONDecodeError as e:
            log.warning("session %s: unreadable state ignored: %s", session_id, e)
            return Session(id=session_id)
        if not isinstance(context, dict):
            context = {}
        return Session(id=session_id, messages=usable_history(messages), context=context)

    async def save(
        self,
        session_id: str,
        new_messages: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any],
        *,
        history: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Append this turn's messages and store the context, in one MULTI/EXEC. With
        ``history`` the stored messages are replaced by ``history`` then this turn's (a history
        trimmed to fit the model's context, or dropped because the provider refused it).
        Messages are stored normalised (:func:`conversations.normalise_message`)."""
        messages_key, context_key = self.keys(session_id)
        if history is not None:
            new_messages = [*history, *new_messages]
        new_messages = conversations.normalise_messages(new_messages)
        ttl = self.settings.ttl_seconds
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._redis.pipeline(transaction=True) as pipe,
            ):
                if history is not None:
                    pipe.delete(messages_key)
                if new_messages:
                    pipe.rpush(messages_key, *(orjson.dumps(dict(m)) for m in new_messages))
                    pipe.ltrim(messages_key, -self.settings.max_messages, -1)
                pipe.expire(messages_key, ttl)
                pipe.set(context_key, orjson.dumps(dict(context)), ex=ttl)
                await pipe.execute()
        except (aioredis.RedisError, OSError, TimeoutError) as e:
            raise errors.DependencyUnavailable(f"session {session_id}: Redis: {e}") from e
