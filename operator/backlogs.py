"""Reading an agent's queue backlog from Redis, for the autoscaler; deleting a deleted agent's keys.

The operator's only Redis client. The queue's layout belongs to the runtime
(:mod:`pilothouse.runtime.queue`: one stream per agent,
``{keyPrefix}:{namespace}:{agent}:requests``, acknowledged entries deleted), so this module
asks the runtime's own :func:`~pilothouse.runtime.queue.backlog` (entries not yet delivered plus
delivered but unacknowledged) rather than knowing the key or the arithmetic itself. It adds
what an operator needs around it: one client per Redis URL, short timeouts (a dead Redis must
not stall the timer), and one error family (:class:`~.errors.BacklogUnavailable`). When an
agent is deleted, :meth:`BacklogReader.delete_keys` removes the keys matching the runtime's
:func:`~pilothouse.runtime.queue.agent_key_patterns`, a bounded number per call (``SCAN`` +
``UNLINK``: no blocking ``KEYS``), so the caller can go on where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from pilothouse.operator import errors
from pilothouse.runtime import config, queue

__all__ = ["DEFAULT_TIMEOUT", "DELETE_BATCH", "BacklogReader"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 2.0
"""Seconds one backlog read may take (connect included)."""
DELETE_BATCH: Final = 500
"""Keys scanned (and unlinked) per round trip when deleting an agent's keys."""


class BacklogReader:
    """Reads backlogs; one connection pool per Redis URL, reused across agents and ticks."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = timeout
        self._clients: dict[str, aioredis.Redis] = {}

    def _client(self, url: str) -> aioredis.Redis:
        client = self._clients.get(url)
        if client is None:
            client = aioredis.Redis.from_url(
                url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
                health_check_interval=30,
            )
            self._clients[url] = client
        return client

    async def read(self, url: str, cfg: config.RuntimeConfig) -> int:
        """The agent's backlog; :class:`BacklogUnavailable` when Redis cannot tell."""
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await queue.backlog(self._client(url), cfg)
        except (redis_errors.RedisError, OSError, TimeoutError) as e:
            where = f"{cfg.namespace}/{cfg.agent}"
            raise errors.BacklogUnavailable(
                f"cannot read the backlog of {where} from Redis: {type(e).__name__}: {e}"
            ) from e
        except ValueError as e:  # a malformed URL
            raise errors.BacklogUnavailable(f"bad Redis URL: {e}") from e

    async def delete_keys(
        self, url: str, patterns: tuple[str, ...], *, limit: int
    ) -> tuple[int, bool]:
        """Unlink keys matching ``patterns``, at most about ``limit``; (deleted, done).

        Idempotent: keys already gone are not counted, and a call after ``done`` is False goes
        on where the last one stopped (the deleted keys no longer match).
        """
        deleted = 0
        try:
            client = self._client(url)
            for pattern in patterns:
                if "*" not in pattern:
                    deleted += int(await client.unlink(pattern))
                    continue
                async for batch in _batches(client.scan_iter(match=pattern, count=DELETE_BATCH)):
                    deleted += int(await client.unlink(*batch))
                    if deleted >= limit:
                        return deleted, False
        except (redis_errors.RedisError, OSError, TimeoutError) as e:
            raise errors.BacklogUnavailable(
                f"cannot delete keys from Redis: {type(e).__name__}: {e}"
            ) from e
        except ValueError as e:  # a malformed URL
            raise errors.BacklogUnavailable(f"bad Redis URL: {e}") from e
        return deleted, True

    async def close(self) -> None:
        """Close every connection pool."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


async def _batches(keys: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= DELETE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
