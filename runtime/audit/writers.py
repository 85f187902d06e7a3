"""The batched audit writer: decision records and request summaries into PostgreSQL.

Implements :class:`pilothouse.runtime.records.DecisionSink`. The worker calls
:meth:`AuditWriter.submit_result` (or :meth:`~AuditWriter.submit`) before it acknowledges a
queue entry; the call returns once the records are durable: written to PostgreSQL, or
appended and fsync'd to the local spool.

How it stays cheap for the caller (group commit): submissions wait in a buffer; one flusher
task writes everything buffered (up to ``batchSize`` records) in one transaction as soon as the
previous write finished, so under load each caller waits about one batch write and a batch
carries every caller that arrived meanwhile. A batch that has not committed within
``flushIntervalSeconds`` is abandoned to the spool (its callers are released; the spool replay
drops whatever did commit). Beyond ``maxBufferedRecords`` buffered records, new submissions go
straight to the spool: memory stays bounded and nothing accepted is lost. A spool operation
runs to its end before the spool is let go, even when its caller is cancelled meanwhile, and a
spool that cannot be written fails the submissions waiting on it (never leaves them waiting).

When PostgreSQL is unreachable the writer switches to the spool; a replay task retries with
exponential backoff, replays the spool (``(agent, request, step)`` uniqueness makes that
idempotent: no loss, no duplicates) and switches back once it is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from pilothouse.runtime import config, errors, metrics, records, requests
from pilothouse.runtime.audit import rows, spool, store

__all__ = ["RECORD_OUTCOMES", "AuditWriter", "spool_lines"]

log = logging.getLogger(__name__)

DEFAULT_BACKOFF: Final = (0.25, 15.0)
"""Replay retry backoff: first delay and cap, in seconds (doubling in between)."""
RECORD_OUTCOMES: Final = ("written", "spooled", "replayed", "duplicate", "rejected")
"""Values of the ``outcome`` label of ``pilothouse_audit_records_total``."""
_DECISION: Final = "d"
_REQUEST: Final = "r"

T = TypeVar("T")


async def _to_completion(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` in a thread, awaited to the end even when the caller is cancelled
    meanwhile (the cancellation is raised afterwards): a spool file operation is never left
    running in its thread after the caller let go of the spool lock."""
    work = asyncio.ensure_future(asyncio.to_thread(call, *args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            if work.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result


@dataclass(slots=True)
class _Submission:
    decisions: list[rows.DecisionRow]
    requests: list[rows.RequestRow]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return len(self.decisions) + len(self.requests)


def spool_lines(
    decisions: Sequence[rows.DecisionRow], reqs: Sequence[rows.RequestRow]
) -> list[dict[str, Any]]:
    """Records as spool lines (the JSON objects of a spool segment, one per record)."""
    return [{"t": _DECISION, **d.to_json()} for d in decisions] + [
        {"t": _REQUEST, **r.to_json()} for r in reqs
    ]


def _from_spool(
    lines: list[dict[str, Any]],
) -> tuple[list[rows.DecisionRow], list[rows.RequestRow]]:
    decisions = [rows.DecisionRow.from_json(x) for x in lines if x.get("t") == _DECISION]
    reqs = [rows.RequestRow.from_json(x) for x in lines if x.get("t") == _REQUEST]
    return decisions, reqs


class AuditWriter:
    """See the module docstring. ``start()`` before use, ``close()`` on shutdown."""

    def __init__(
        self,
        audit_store: store.AuditStore,
        cfg: config.AuditConfig,
        settings: rows.AuditSettings,
        *,
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
    ) -> None:
        self.store = audit_store
        self.settings = settings
        self._batch_size = cfg.batch_size
        self._deadline = cfg.flush_interval_seconds
        self._max_buffered = cfg.max_buffered_records
        self._clock = clock
        self._backoff = backoff
        self._spool = spool.Spool(Path(cfg.spool_dir))
        for outcome in RECORD_OUTCOMES:  # at 0 from the start (see metrics.py)
            metrics.AUDIT_RECORDS.labels(outcome=outcome)
        self._spool_lock = asyncio.Lock()
        self._queue: list[_Submission] = []
        self._buffered = 0
        self._wake = asyncio.Event()
        self._replay_wanted = asyncio.Event()
        self._healthy = True
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def healthy(self) -> bool:
        """False while records go to the spool because PostgreSQL is unreachable."""
        return self._healthy

    @property
    def spooled(self) -> int:
        """Records in the spool waiting for replay."""
        return self._spool.pending

    async def start(self) -> AuditWriter:
        await asyncio.to_thread(self._spool.open)
        metrics.AUDIT_SPOOLED.set(self._spool.pending)
        if self._spool.pending:
            self._healthy = False
            self._replay_wanted.set()
        self._tasks = [
            asyncio.create_task(self._flusher(), name="audit-flusher"),
            asyncio.create_task(self._replayer(), name="audit-replayer"),
        ]
        return self

    async def close(self) -> None:
        """Write (or spool) what is buffered, then stop. The spool stays for the next start."""
        self._closing = True
        self._wake.set()
        flusher, replayer = self._tasks or (None, None)
        if replayer is not None:
            replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replayer
        if flusher is not None:
            await flusher
        self._tasks = []
        await asyncio.to_thread(self._spool.close)

    # ------------------------------------------------------------------------ the sink

    async def submit(self, decisions: Sequence[records.AgentDecision]) -> None:
        """Hand decision records over; returns once they are durable."""
        await self._submit([rows.decision_row(d, self.settings) for d in decisions], [])

    async def submit_result(
        self,
        request: requests.AgentRequest,
        result: requests.AgentResult,
        decisions: Sequence[records.AgentDecision] = (),
    ) -> None:
        """Hand over a finished request: its summary row and its decision records, in one
        durable step (what the worker calls before it acknowledges the queue entry)."""
        finished = datetime.fromtimestamp(self._clock(), UTC)
        await self._submit(
            [rows.decision_row(d, self.settings) for d in decisions],
            [rows.request_row(request, result, self.settings, finished)],
        )

    async def _submit(self, decisions: list[rows.DecisionRow], reqs: list[rows.RequestRow]) -> None:
        if not decisions and not reqs:
            return
        if self._closing or not self._tasks:
            raise errors.PilothouseError("the audit writer is not running")
        sub = _Submission(decisions, reqs)
        if self._buffered + sub.size > self._max_buffered:
            await self._to_spool([sub])
        else:
            self._queue.append(sub)
            self._buffered += sub.size
            self._wake.set()
        await asyncio.shield(sub.done)

    # ------------------------------------------------------------------------ flushing

    def _take(self) -> list[_Submission]:
        batch: list[_Submission] = []
        size = 0
        while self._queue and (not batch or size + self._queue[0].size <= self._batch_size):
            sub = self._queue.pop(0)
            batch.append(sub)
            size += sub.size
        self._buffered -= size
        return batch

    async def _flusher(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            if self._healthy and await self._write(batch):
                continue
            await self._to_spool(batch)

    async def _write(self, batch: list[_Submission]) -> bool:
        decisions = [d for s in batch for d in s.decisions]
        reqs = [r for s in batch for r in s.requests]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                outcome = await self.store.write(decisions, reqs)
        except Exception as e:  # whatever went wrong, the records go to the spool
            log.warning(
                "audit: PostgreSQL write failed (%s: %s); spooling until it is back",
                type(e).__name__,
                e,
            )
            self._healthy = False
            self._replay_wanted.set()
            return False
        metrics.AUDIT_BATCH_DURATION.observe(time.perf_counter() - started)
        metrics.AUDIT_RECORDS.labels(outcome="written").inc(outcome.written + len(reqs))
        if outcome.duplicates:
            metrics.AUDIT_RECORDS.labels(outcome="duplicate").inc(outcome.duplicates)
        for s in batch:
            if not s.done.done():
                s.done.set_result(None)
        return True

    async def _to_spool(self, batch: list[_Submission]) -> None:
        lines = spool_lines(
            [d for s in batch for d in s.decisions], [r for s in batch for r in s.requests]
        )
        try:
            async with self._spool_lock:
                await _to_completion(self._spool.append, lines)
        except asyncio.CancelledError:
            self._spooled(batch, len(lines))  # cancelled after the append: they are on disk
            raise
        except Exception as e:  # the flusher must outlive it, and callers must hear of it
            failure = errors.DependencyUnavailable(
                f"audit: PostgreSQL is unreachable and the spool cannot be written: {e}"
            )
            log.error("%s", failure, exc_info=not isinstance(e, OSError))
            for s in batch:
                if not s.done.done():
                    s.done.set_exception(failure)
            return
        self._spooled(batch, len(lines))

    def _spooled(self, batch: list[_Submission], count: int) -> None:
        metrics.AUDIT_RECORDS.labels(outcome="spooled").inc(count)
        metrics.AUDIT_SPOOLED.set(self._spool.pending)
        self._replay_wanted.set()
        for s in batch:
            if not s.done.done():
                s.done.set_result(None)

    # ------------------------------------------------------------------------ replay

    async def _replayer(self) -> None:
        delay = self._backoff[0]
        while True:
            await self._replay_wanted.wait()
            try:
                await self._replay()
            except Exception as e:  # the replayer must outlive any failure
                log.info("audit: replay waits for PostgreSQL (%s); retry in %.2fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]

    async def _replay(self) -> None:
        """Replay every closed segment; when the spool is empty, go back to direct writes."""
        while True:
            async with self._spool_lock:
                if self._spool.current_empty and not self._spool.segments():
                    self._healthy = True
                    self._replay_wanted.clear()
                    metrics.AUDIT_SPOOLED.set(self._spool.pending)
                    return
                await _to_completion(self._spool.rotate)
                segments = self._spool.segments()
            for path in segments:
                await self._replay_segment(path)

    async def _replay_segment(self, path: Path) -> None:
        chunks = await asyncio.to_thread(lambda: list(self._spool.read(path, self._batch_size)))
        count = sum(len(lines) for lines in chunks)
        rejected: list[dict[str, Any]] = []
        for lines in chunks:
            rejected += await self._replay_lines(lines)
        if rejected:
            target = await asyncio.to_thread(self._spool.reject, path, rejected)
            log.error(
                "audit: PostgreSQL rejects %d spooled record(s); kept in %s", len(rejected), target
            )
            metrics.AUDIT_RECORDS.labels(outcome="rejected").inc(len(rejected))
        async with self._spool_lock:
            await _to_completion(self._spool.remove, path, count)
        metrics.AUDIT_SPOOLED.set(self._spool.pending)
        log.info("audit: replayed %d spooled record(s) from %s", count, path.name)

    async def _replay_lines(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write spooled records; the ones PostgreSQL rejects (isolated one by one) are
        returned. Connection trouble propagates: the segment stays for the next attempt."""
        try:
            decisions, reqs = _from_spool(lines)
            async with asyncio.timeout(max(self._deadline, 5.0)):
                outcome = await self.store.write(decisions, reqs)
        except (store.AuditStoreError, KeyError, ValueError, TypeError):
            if len(lines) == 1:
                return lines
            rejected: list[dict[str, Any]] = []
            for line in lines:
                rejected += await self._replay_lines([line])
            return rejected
        metrics.AUDIT_RECORDS.labels(outcome="replayed").inc(outcome.written + len(reqs))
        if outcome.duplicates:
            metrics.AUDIT_RECORDS.labels(outcome="duplicate").inc(outcome.duplicates)
        return []
