"""Cancelling a request: ``DELETE /v1/requests/{id}`` marks it; the loop stops at its next step.

The API and the worker that runs a request are often different pods, so the mark is a Redis key
beside the request's state, ``{prefix}:{namespace}:{agent}:request:{id}:cancel``, set by
:meth:`Cancellations.cancel` only while the request is not answered (one Lua call reads the
state and sets the mark, so an answered request is never marked).

The loop learns of it through the policy seam: :class:`CancellableHook` wraps the agent's
:class:`~pilothouse.runtime.hooks.PolicyHook` and, before every action it is asked about (the
request's admission, each LLM call, each tool call), denies the action when the mark is set, as
the policy :data:`POLICY`. In the same round trip it announces the action on the request's
progress channel (:mod:`pilothouse.runtime.progress`), so streams show steps as they start.
So a queued request is refused as soon as a worker takes it, a
running one stops before its next LLM or tool call, and the audit trail records the denied
action and the refusal like any policy's. The price is one round trip (``EXISTS`` and
``PUBLISH``) per action. Wired by
:mod:`pilothouse.runtime.serving` (hook) and :mod:`pilothouse.runtime.api` (route).
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

import orjson
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from pilothouse.runtime import config, envelopes, errors, hooks, progress, queue

__all__ = ["POLICY", "CancellableHook", "Cancellations", "cancel_key"]

log = logging.getLogger(__name__)

POLICY: Final = "cancelled"
"""The ``policy`` of the verdict (and of the result) that stops a cancelled request."""

# KEYS[1] state key, KEYS[2] cancel key; ARGV[1] TTL seconds.
# Returns 0 unknown, 1 marked (not answered yet), 2 answered already.
_CANCEL_LUA: Final = f"""
local state = redis.call('GET', KEYS[1])
if not state then return 0 end
if string.sub(state, 1, 1) == '{envelopes.DONE.decode()}' then return 2 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""


def cancel_key(cfg: config.RuntimeConfig, request_id: str) -> str:
    """Where the cancel mark of a request is kept."""
    return f"{queue.state_key(cfg, request_id)}:cancel"


class Cancellations:
    """Sets and reads the cancel marks of one agent's requests."""

    def __init__(self, redis: aioredis.Redis, cfg: config.RuntimeConfig) -> None:
        self.redis = redis
        self.cfg = cfg
        self._script = redis.register_script(_CANCEL_LUA)

    async def cancel(self, request_id: str) -> Literal["cancelling", "done"] | None:
        """Mark a request that is not answered yet: ``cancelling``; ``done`` when it is answered
        already (nothing marked); None when the id is unknown or expired."""
        keys = [queue.state_key(self.cfg, request_id), cancel_key(self.cfg, request_id)]
        ttl = max(1, int(self.cfg.workers.result_ttl_seconds))
        try:
            found = int(await self._script(keys=keys, args=[ttl]))
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            raise errors.DependencyUnavailable(
                f"cancellations: Redis unreachable while cancelling {request_id}: {e}"
            ) from e
        return {0: None, 1: "cancelling", 2: "done"}[found]

    async def cancelled(self, request_id: str, *, announce: dict[str, Any] | None = None) -> bool:
        """Whether the request is marked; in the same round trip, publish ``announce`` on the
        request's progress channel (:mod:`progress`). Raises
        :class:`errors.DependencyUnavailable`."""
        try:
            if announce is None:
                return bool(await self.redis.exists(cancel_key(self.cfg, request_id)))
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(cancel_key(self.cfg, request_id))
                pipe.publish(progress.channel(self.cfg, request_id), orjson.dumps(announce))
                marked, _ = await pipe.execute()
            return bool(marked)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            raise errors.DependencyUnavailable(f"cancellations: Redis unreachable: {e}") from e


class CancellableHook:
    """A :class:`hooks.PolicyHook` that denies every action of a cancelled request, and asks
    ``inner`` about the others. Without Redis the mark cannot be read: the action goes on to
    ``inner`` (which decides whether Redis trouble fails closed), never refused for it."""

    def __init__(self, inner: hooks.PolicyHook, cancellations: Cancellations) -> None:
        self.inner = inner
        self.cancellations = cancellations

    async def check(self, action: hooks.Action) -> hooks.PolicyResult:
        try:
            cancelled = await self.cancellations.cancelled(
                action.request_id, announce=progress.started_event(action)
            )
        except errors.DependencyUnavailable as e:
            log.warning("request %s: cannot read its cancel mark: %s", action.request_id, e)
            cancelled = False
        if cancelled:
            reason = f"the request was cancelled (DELETE /v1/requests/{action.request_id})"
            return hooks.PolicyResult(hooks.Verdict.DENIED, policy=POLICY, reason=reason)
        return await self.inner.check(action)

    async def settle(self, action: hooks.Action, actual_cost_usd: float) -> None:
        await self.inner.settle(action, actual_cost_usd)
