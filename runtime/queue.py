"""The durable work queue: one Redis stream per agent, read by a consumer group of workers.

This is the only module that talks to the queue in Redis. The HTTP API enqueues with
:meth:`WorkQueue.enqueue`; the worker pool (``pilothouse.runtime.workers``) reads, reclaims,
answers, acknowledges and dead-letters entries; the operator's autoscaler imports
:func:`stream_key`, :data:`GROUP` and :func:`backlog` to read an agent's backlog.

How it stays exact and cheap (each numbered step is one round trip, done by a Lua script):

1. Enqueue checks the request id (a request already known is never queued twice), the backlog
   bound, then XADDs and records the request as ``queued``. The bound is exact because
   acknowledged entries are deleted: ``XLEN`` *is* the backlog (not yet delivered plus delivered
   but unacknowledged), for Redis 6.2 and 7 alike. Nothing is trimmed: a full queue answers
   :class:`QueueFull`, it never drops accepted work.
2. A worker answers a batch of entries at once: for an entry still pending whose answer key is
   not set yet (SET NX), store the result (``state key``, TTL ``resultTtlSeconds``), keep the
   audit records under the entry's answer key, and PUBLISH the result to the reply channel of
   the API process that waits for it. Only the first answer of an entry writes: a request is
   answered once. Once the audit records are durable, :meth:`WorkQueue.finish` acknowledges
   (XACK, XDEL, answer key deleted), again for a batch.
3. Entries idle past the visibility timeout (their pod died) are claimed with XAUTOCLAIM, with
   their delivery counts; past ``maxDeliveries`` they go to the dead-letter stream with the
   reason, acknowledged in the main stream.

A request's state lives under ``{prefix}:{namespace}:{agent}:request:{id}``: ``q`` + JSON while
queued, ``d`` + the :class:`~pilothouse.runtime.requests.AgentResult` JSON once answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from pilothouse.runtime import config, envelopes, errors

__all__ = [
    "GROUP",
    "QueueError",
    "QueueFull",
    "QueueUnavailable",
    "WorkQueue",
    "backlog",
    "dead_letter_key",
    "key_base",
    "now",
    "read_state",
    "reply_channel",
    "state_key",
    "stream_key",
]

log = logging.getLogger(__name__)

GROUP: Final = "workers"
"""The consumer group every worker of an agent reads with."""
DEAD_LETTER_MAXLEN: Final = 10_000
"""Approximate bound of the dead-letter stream (oldest dead letters are trimmed first)."""


# ------------------------------------------------------------------------------------- names


def key_base(cfg: config.RuntimeConfig) -> str:
    """``{keyPrefix}:{namespace}:{agent}``: the prefix of every key of one agent."""
    return f"{cfg.redis.key_prefix}:{cfg.namespace}:{cfg.agent}"


def agent_key_patterns(key_prefix: str, namespace: str, agent: str) -> tuple[str, ...]:
    """Redis ``SCAN MATCH`` patterns covering every key the runtime keeps for one agent.

    The queue (``{prefix}:{namespace}:{agent}`` and below: the request stream, dead letters,
    request states and results), the circuit breakers (``{prefix}:breaker:{namespace}/{agent}:``),
    the sessions (``{prefix}:session:{{{namespace}/{agent}/``) and the policies' budgets and
    rate limits (``{prefix}:{{{namespace}/{agent}}}:``). No pattern matches another agent's keys
    (names are DNS labels, so they hold no glob characters). The operator deletes these when the
    agent is deleted.
    """
    return (
        f"{key_prefix}:{namespace}:{agent}",
        f"{key_prefix}:{namespace}:{agent}:*",
        f"{key_prefix}:breaker:{namespace}/{agent}:*",
        f"{key_prefix}:session:{{{namespace}/{agent}/*",
        f"{key_prefix}:{{{namespace}/{agent}}}:*",
    )


def stream_key(cfg: config.RuntimeConfig) -> str:
    """The agent's request stream, ``{keyPrefix}:{namespace}:{agent}:requests``."""
    return f"{key_base(cfg)}:requests"


def dead_letter_key(cfg: config.RuntimeConfig) -> str:
    """The agent's dead-letter stream, ``{keyPrefix}:{namespace}:{agent}:dead``."""
    return f"{key_base(cfg)}:dead"


def state_key(cfg: config.RuntimeConfig, request_id: str) -> str:
    """Where a request's state (queued, or its result) is kept."""
    return f"{key_base(cfg)}:request:{request_id}"


def reply_channel(cfg: config.RuntimeConfig, instance: str) -> str:
    """The pub/sub channel on which one API process hears about the results it waits for."""
    return f"{key_base(cfg)}:results:{instance}"


def _errors_key(cfg: config.RuntimeConfig) -> str:
    return f"{key_base(cfg)}:requests:errors"


async def read_state(
    redis: aioredis.Redis, cfg: config.RuntimeConfig, request_id: str
) -> envelopes.RequestState | None:
    """A request's state (queued, or done with its result); None when unknown or expired."""
    with _queue_errors("reading a request's state"):
        return envelopes.parse_state(await redis.get(state_key(cfg, request_id)))


async def backlog(redis: aioredis.Redis, cfg: config.RuntimeConfig) -> int:
    """Entries not yet delivered plus delivered but unacknowledged.

    Acknowledged entries are deleted, so this is the stream's length: one O(1) command.
    """
    n: int = await redis.xlen(stream_key(cfg))
    return n


# ------------------------------------------------------------------------------------ errors


class QueueFull(errors.RuntimeFailure):
    """The backlog is at ``queueMaxLength``: the request was not accepted, try again later."""

    def __init__(self, backlog: int, limit: int, retry_after: int) -> None:
        super().__init__(f"the queue is full ({backlog} of {limit} entries); retry later")
        self.backlog = backlog
        self.limit = limit
        self.retry_after = retry_after


class QueueUnavailable(errors.DependencyUnavailable):
    """Redis cannot be reached: nothing was enqueued or acknowledged."""


class QueueError(errors.RuntimeFailure):
    """Redis answered a queue command with an error (e.g. the stream vanished in a restart)."""


# -------------------------------------------------------------------------------- Lua scripts


def _script(name: str) -> str:
    """A script of ``queue_lua/`` (each states its KEYS and ARGV)."""
    return resources.files("pilothouse.runtime").joinpath("queue_lua", f"{name}.lua").read_text()


@contextlib.contextmanager
def _queue_errors(what: str) -> Iterator[None]:
    """Wrap redis-py's errors at the boundary: unreachable, or refused."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
        raise QueueUnavailable(f"queue: Redis unreachable while {what}: {e}") from e
    except redis_errors.ResponseError as e:
        raise QueueError(f"queue: Redis refused {what}: {e}") from e


# ------------------------------------------------------------------------------ the queue


class WorkQueue:
    """One agent's stream, seen by one process (``consumer`` names it in the group)."""

    def __init__(self, redis: aioredis.Redis, cfg: config.RuntimeConfig, *, consumer: str) -> None:
        self.redis = redis
        self.cfg = cfg
        self.consumer = consumer
        self.stream = stream_key(cfg)
        self.dead = dead_letter_key(cfg)
        self._errors = _errors_key(cfg)
        self._max_backlog = cfg.workers.queue_max_length
        self._ttl = cfg.workers.result_ttl_seconds
        self._enqueue = redis.register_script(_script("enqueue"))
        self._answer_escalated = redis.register_script(_script("answer_escalated"))
        self._answer = redis.register_script(_script("answer"))
        self._finish = redis.register_script(_script("finish"))
        self._dead_letter = redis.register_script(_script("dead_letter"))
        self._reclaim = redis.register_script(_script("reclaim"))
        self._renew = redis.register_script(_script("renew"))
        self._release_mine = redis.register_script(_script("release_mine"))

    # ------------------------------------------------------------------------ producers

    async def ensure_group(self) -> None:
        """Create the stream and the consumer group if missing (idempotent)."""
        with _queue_errors("creating the consumer group"):
            try:
                await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def enqueue(
        self, envelope: envelopes.Envelope
    ) -> envelopes.Accepted | envelopes.RequestState:
        """Add a request to the stream, or say what is already known about its id.

        Returns :class:`Accepted`, or the :class:`RequestState` of a request id that is already
        queued or answered (nothing is added then). A request with ``approved_escalation`` set
        resumes: it is added only while its stored answer is still that escalation (so resuming
        twice runs it once), and the bound does not apply (that work was accepted before).
        Raises :class:`QueueFull` at the bound, :class:`QueueUnavailable` without Redis.
        """
        rid = envelope.request.request_id
        resumes = envelope.request.approved_escalation or ""
        state = envelopes.QUEUED + orjson.dumps({"at": envelope.accepted_at})
        bound = 0 if resumes else self._max_backlog
        args: list[Any] = [bound, state, self._ttl, resumes]
        for k, v in envelopes.encode_envelope(envelope).items():
            args += (k, v)
        with _queue_errors("enqueueing"):
            reply = await self._enqueue(keys=[self.stream, state_key(self.cfg, rid)], args=args)
        kind = envelopes.to_str(reply[0])
        if kind == "ok":
            return envelopes.Accepted(envelopes.to_str(reply[1]), int(reply[2]))
        if kind == "full":
            n = int(reply[1])
            raise QueueFull(n, self._max_backlog, envelopes.DEFAULT_RETRY_AFTER_SECONDS)
        known = envelopes.parse_state(reply[1])
        return known if known is not None else envelopes.RequestState("queued")

    async def state(self, request_id: str) -> envelopes.RequestState | None:
        """The request's state, or None when the id is unknown (or its result expired)."""
        return await read_state(self.redis, self.cfg, request_id)

    async def answer_escalated(
        self, request_id: str, escalation_id: str, result_json: bytes
    ) -> bool:
        """Store the final answer of a request whose escalation was denied or expired (it is
        not in the stream); False when the request moved on meanwhile (nothing written)."""
        with _queue_errors("storing a result"):
            written = await self._answer_escalated(
                keys=[state_key(self.cfg, request_id)],
                args=[escalation_id, envelopes.DONE + result_json, self._ttl],
            )
        return int(written) == 1

    async def backlog(self) -> int:
        with _queue_errors("reading the backlog"):
            return await backlog(self.redis, self.cfg)

    async def ping(self) -> None:
        with _queue_errors("pinging"):
            await self.redis.ping()

    # ------------------------------------------------------------------------ consumers

    async def read(self, count: int, *, block_ms: int) -> list[envelopes.Delivery]:
        """New entries for this consumer, waiting up to ``block_ms`` for the first."""
        with _queue_errors("reading the stream"):
            try:
                reply = await self._xreadgroup(count, block_ms)
            except redis_errors.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                await self.ensure_group()
                reply = await self._xreadgroup(count, block_ms)
        out: list[envelopes.Delivery] = []
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for item in streams:
            entries = item[1]
            # RESP3 nests one more level: {stream: [[(id, fields), ...]]}
            if len(entries or ()) == 1 and entries[0] and isinstance(entries[0][0], list | tuple):
                entries = entries[0]
            for entry_id, fields in entries:
                out.append(envelopes.delivery_of(entry_id, fields, 1))
        return out

    async def _xreadgroup(self, count: int, block_ms: int) -> Any:
        return await self.redis.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )

    async def reclaim(
        self, count: int, *, min_idle_ms: int | None = None
    ) -> list[envelopes.Delivery]:
        """Claim entries idle past the visibility timeout (their worker died), with counts."""
        idle = min_idle_ms
        if idle is None:
            idle = int(self.cfg.workers.visibility_timeout_seconds * 1000)
        with _queue_errors("reclaiming entries"):
            try:
                reply = await self._reclaim(
                    keys=[self.stream], args=[GROUP, self.consumer, idle, count]
                )
            except redis_errors.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                await self.ensure_group()
                return []
        out = []
        for entry_id, deliveries, fields in reply:
            if not fields:  # deleted while pending: nothing left to do but forget it
                with _queue_errors("forgetting a deleted entry"):
                    await self.redis.xack(self.stream, GROUP, entry_id)
                continue
            out.append(envelopes.delivery_of(entry_id, fields, int(deliveries)))
        return out

    def _answer_key(self, entry_id: str) -> str:
        return f"{self.stream}:answered:{entry_id}"

    async def answer(self, items: Sequence[envelopes.Completion]) -> list[int]:
        """Store results and notify their waiting callers, in one round trip, before the
        entries are acknowledged (:meth:`finish`, once their audit records are durable).

        With each result the item's audit payload is kept under the entry, so a delivery of
        the same entry after a crash audits what was answered (:meth:`answered_audit`).
        Returns per item: 1 answered now; 0 another delivery of the entry answered first
        (nothing written, audit the stored payload); -1 the entry is no longer pending
        (acknowledged meanwhile: nothing written, nothing to do).
        """
        if not items:
            return []
        keys: list[str] = [self.stream]
        args: list[Any] = [GROUP, self._ttl]
        for item in items:
            keys += (state_key(self.cfg, item.request_id), self._answer_key(item.entry_id))
            args += (
                item.entry_id,
                item.request_id,
                envelopes.DONE + item.result_json,
                item.reply_to or "",
                item.audit,
            )
        with _queue_errors("storing results"):
            reply = await self._answer(keys=keys, args=args)
        return [int(x) for x in reply]

    async def finish(self, entry_ids: Sequence[str]) -> None:
        """Acknowledge answered entries (their audit records are durable)."""
        if not entry_ids:
            return
        keys = [self.stream, self._errors, *(self._answer_key(e) for e in entry_ids)]
        with _queue_errors("acknowledging entries"):
            await self._finish(keys=keys, args=[GROUP, *entry_ids])

    async def answered_audit(self, entry_id: str) -> bytes | None:
        """The audit payload stored when this entry was answered, if it was."""
        with _queue_errors("reading an answered entry"):
            raw = await self.redis.get(self._answer_key(entry_id))
        return None if raw is None else envelopes.to_bytes(raw)

    async def dead_letter(
        self, delivery: envelopes.Delivery, reason: str, *, result_json: bytes | None = None
    ) -> tuple[bool, str]:
        """Move an entry to the dead-letter stream with the reason, acknowledging it.

        With ``result_json`` the request is also answered (with that failure result), so a
        waiting caller hears of it. Returns (whether this call moved it, the reason recorded).
        """
        rid = delivery.request_id
        reply_to = delivery.envelope.reply_to if delivery.envelope else None
        keys = [
            self.stream,
            self.dead,
            self._errors,
            state_key(self.cfg, rid or "_"),
            self._answer_key(delivery.entry_id),
        ]
        args: list[Any] = [
            GROUP,
            delivery.entry_id,
            reason,
            delivery.deliveries,
            self.consumer,
            DEAD_LETTER_MAXLEN,
            (envelopes.DONE + result_json) if (result_json is not None and rid) else "",
            self._ttl,
            reply_to or "",
            rid or "",
        ]
        for k, v in delivery.fields.items():
            args += (k, v)
        with _queue_errors("dead-lettering an entry"):
            moved, recorded = await self._dead_letter(keys=keys, args=args)
        return int(moved) == 1, envelopes.to_str(recorded)

    async def release(self, entry_ids: Sequence[str], *, error: str | None = None) -> None:
        """Give entries back unacknowledged, at once reclaimable by any worker.

        Their idle time is set past the visibility timeout (their delivery count is unchanged);
        ``error`` is remembered as the reason should they end in the dead-letter stream.
        """
        if not entry_ids:
            return
        idle = int(self.cfg.workers.visibility_timeout_seconds * 1000) + 1
        with _queue_errors("releasing entries"):
            async with self.redis.pipeline(transaction=False) as pipe:
                if error:
                    pipe.hset(self._errors, mapping=dict.fromkeys(entry_ids, error[:500]))
                pipe.xclaim(
                    self.stream, GROUP, self.consumer, 0, list(entry_ids), idle=idle, justid=True
                )
                await pipe.execute()

    async def release_all(self, *, error: str | None = None) -> int:
        """Give back every entry this consumer holds (a worker shutting down), including any
        delivered in a reply it never read; returns how many."""
        idle = int(self.cfg.workers.visibility_timeout_seconds * 1000) + 1
        with _queue_errors("releasing entries"):
            n = await self._release_mine(
                keys=[self.stream, self._errors],
                args=[GROUP, self.consumer, idle, (error or "")[:500]],
            )
        return int(n)

    async def renew(self, entry_ids: Sequence[str]) -> list[str]:
        """Extend this worker's hold on entries it still runs; returns the ids it lost."""
        if not entry_ids:
            return []
        with _queue_errors("renewing leases"):
            try:
                lost = await self._renew(
                    keys=[self.stream], args=[GROUP, self.consumer, *entry_ids]
                )
            except redis_errors.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                return list(entry_ids)  # the stream is gone (Redis lost its data): all lost
        return [envelopes.to_str(x) for x in lost]

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The newest dead letters (entry, reason, deliveries, consumer and the entry's fields)."""
        with _queue_errors("reading dead letters"):
            entries = await self.redis.xrevrange(self.dead, count=count) or []
        return [
            {
                "id": envelopes.to_str(eid),
                **{
                    envelopes.to_str(k): envelopes.to_str(v)
                    for k, v in envelopes.fields_of(f).items()
                },
            }
            for eid, f in entries
        ]

    async def prune_consumers(self, *, idle_ms: int) -> int:
        """Forget consumers (old pods) that hold nothing and were idle this long."""
        with _queue_errors("pruning consumers"):
            try:
                consumers = await self.redis.xinfo_consumers(self.stream, GROUP)
            except redis_errors.ResponseError:
                return 0
            removed = 0
            for c in consumers:
                info = {envelopes.to_str(k): v for k, v in c.items()}
                name = envelopes.to_str(info.get("name", ""))
                if name == self.consumer or int(info.get("pending", 1)) != 0:
                    continue
                if int(info.get("idle", 0)) >= idle_ms:
                    await self.redis.xgroup_delconsumer(self.stream, GROUP, name)
                    removed += 1
            return removed


def now() -> float:
    """Epoch seconds: when a request is accepted (compared across pods, so wall clock)."""
    return time.time()
