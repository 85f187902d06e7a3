"""Deleting a deleted agent's Redis keys: bounded, idempotent, never blocking deletion for good.

An agent leaves state in Redis (its request stream and dead letters, request states and results,
sessions, circuit breakers, budgets and rate limits). Kopf runs :meth:`RedisCleanup.run` as the
AgentDeployment's deletion handler, before it removes the ``pilothouse.dev/finalizer``: the keys
matching the runtime's :func:`~pilothouse.runtime.queue.agent_key_patterns` are unlinked, at
most :data:`KEYS_PER_PASS` per pass (a huge agent is cleaned over several passes, each one
resuming where the last stopped). When Redis cannot be reached the handler retries every few
seconds for ``--redis-cleanup-timeout`` seconds, then gives up with a warning Event saying which
keys were left where, and the deletion completes: a dead Redis never keeps an agent Terminating.
Outcomes are Events on the agent: ``RedisKeysDeleted``, ``RedisCleanupRetrying``,
``RedisKeysLeft``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import ValidationError

from pilothouse.operator import api, backlogs, errors, kube, reconciling, scaling
from pilothouse.runtime import queue

__all__ = [
    "KEYS_PER_PASS",
    "RETRY_DELAY",
    "MoreKeys",
    "Outcome",
    "RedisCleanup",
    "RedisUnreachable",
    "decide",
]

log = logging.getLogger(__name__)

KEYS_PER_PASS: Final = 10_000
"""Keys deleted in one pass of the deletion handler before it hands back to Kopf."""
RETRY_DELAY: Final = 5.0
"""Seconds between two attempts while Redis is unreachable."""

Outcome = str  # "retry" | "give-up"

KEYS_DELETED: Final = "RedisKeysDeleted"
CLEANUP_RETRYING: Final = "RedisCleanupRetrying"
KEYS_LEFT: Final = "RedisKeysLeft"


class MoreKeys(Exception):  # a control signal, like Kopf's own
    """More keys remain than one pass deletes: run again."""


class RedisUnreachable(errors.BacklogUnavailable):
    """Redis cannot be reached for now: run again after :data:`RETRY_DELAY`."""


def decide(elapsed: float, timeout: float) -> Outcome:
    """After a failed attempt ``elapsed`` seconds into the deletion: retry, or give up."""
    return "retry" if elapsed < timeout else "give-up"


class RedisCleanup:
    """The deletion handler's work; one per operator process."""

    def __init__(
        self,
        reconciler: reconciling.Reconciler,
        reader: backlogs.BacklogReader,
        autoscaler: scaling.Autoscaler,
        *,
        timeout: float,
    ) -> None:
        self._reconciler = reconciler
        self._reader = reader
        self._autoscaler = autoscaler
        self._timeout = timeout
        self._deleted: dict[tuple[str, str], int] = {}

    async def run(
        self, namespace: str, name: str, uid: str, spec: Mapping[str, Any], *, elapsed: float,
        first: bool,
    ) -> None:  # fmt: skip
        """One pass. Raises :class:`MoreKeys` or :class:`RedisUnreachable` to be run again."""
        about = kube.ObjectRef(api.API_VERSION, api.AGENT_KIND, name, namespace, uid)
        prefix = str((spec.get("redis") or {}).get("keyPrefix") or "pilothouse")
        patterns = queue.agent_key_patterns(prefix, namespace, name)
        where = ", ".join(patterns)
        try:
            url = await asyncio.to_thread(self._url, namespace, spec)
            if url is None:
                return  # the agent never had a Redis: nothing to clean
            deleted, done = await self._reader.delete_keys(url, patterns, limit=KEYS_PER_PASS)
        except errors.BacklogUnavailable as e:
            if decide(elapsed, self._timeout) == "retry":
                if first:
                    await self._event(
                        about, CLEANUP_RETRYING,
                        f"cannot delete the agent's Redis keys yet ({e}); retrying for "
                        f"{self._timeout:.0f} s, then the deletion completes without them",
                    )  # fmt: skip
                raise RedisUnreachable(str(e)) from e
            self._deleted.pop((namespace, name), None)
            await self._event(
                about, KEYS_LEFT,
                f"gave up deleting the agent's Redis keys after {self._timeout:.0f} s ({e}); "
                f"left in Redis: keys matching {where}",
            )  # fmt: skip
            return
        total = self._deleted.get((namespace, name), 0) + deleted
        if not done:
            self._deleted[(namespace, name)] = total
            raise MoreKeys(f"{total} keys deleted so far")
        self._deleted.pop((namespace, name), None)
        host = urlsplit(url).hostname or "redis"
        await self._event(
            about, KEYS_DELETED, f"deleted {total} Redis key(s) of the agent from {host}",
            warning=False,
        )  # fmt: skip

    def _url(self, namespace: str, spec: Mapping[str, Any]) -> str | None:
        settings = self._reconciler.settings
        try:
            parsed = api.AgentDeploymentSpec.model_validate(spec)
        except ValidationError:
            parsed = None
        has_ref = parsed is not None and parsed.redis.url_secret_ref is not None
        if not has_ref and not settings.redis_url and settings.runtime.redis_secret is None:
            return settings.runtime.redis_url  # a plain development URL, or no Redis at all
        if parsed is None:
            raise errors.BacklogUnavailable("the spec does not validate: its Redis is unknown")
        return self._autoscaler.redis_url(namespace, parsed)

    async def _event(
        self, about: kube.ObjectRef, reason: str, message: str, *, warning: bool = True
    ) -> None:
        await asyncio.to_thread(self._reconciler.event, about, reason, message, warning=warning)
