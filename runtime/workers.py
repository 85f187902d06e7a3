"""The worker pool: N concurrent tasks per process that run queued requests through the agent.

Started by :mod:`pilothouse.runtime.serving` in the ``worker`` and ``all`` roles. One fetch loop
reads as many entries as there are free slots (``workers.concurrency``), so in-flight work is
bounded; each entry runs in its own task with a deadline. Then, in this order: the result is
stored and the waiting caller notified (with the audit records kept beside it in Redis), the
records are handed to the audit writer (durable when it returns), and only then is the entry
acknowledged. The caller never waits for the audit write, yet an entry is acknowledged only
when both are safe; a redelivery of an answered entry audits the stored answer rather than
running again (answered once, audited once). Concurrent tasks' stores and acknowledgements go
to Redis in batched round trips (:mod:`pilothouse.runtime.batching`).

Failures: a request whose processing raises is given back at once for another try, and after
``maxDeliveries`` tries it goes to the dead-letter stream with the reason (and its caller gets a
``failed`` answer). A pod that dies leaves its entries pending; another pod's reclaim loop takes
them over after ``visibilityTimeoutSeconds``. Live workers renew their hold on the entries they
run, so a slow LLM call is never mistaken for a dead pod.

On :meth:`WorkerPool.drain` (SIGTERM) the pool stops taking work, gives in-flight work
``shutdownGraceSeconds`` to finish, and gives back what did not finish, unacknowledged, for
another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from opentelemetry import trace

from pilothouse.runtime import (
    batching,
    config,
    envelopes,
    metrics,
    queue,
    records,
    requests,
    telemetry,
)

__all__ = ["DEADLINE_GRACE_SECONDS", "Processed", "Processor", "ResultSink", "WorkerPool"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEADLINE_GRACE_SECONDS: Final = 2.0
"""Time past a request's deadline before the worker stops waiting for the agent loop (which
enforces the deadline itself and answers with the fallback)."""
READ_BLOCK_MS: Final = 1000
"""How long one read blocks waiting for new entries."""
RECLAIM_INTERVAL_SECONDS: Final = 1.0
"""Longest time between two reclaim passes (shorter with a short visibility timeout): how long
entries given back by a draining replica wait at most."""
PRUNE_INTERVAL_SECONDS: Final = 60.0
DEAD_LETTER_STEP: Final = 10_000
"""Step number of the ``dead_letter`` decision record: past any step the agent loop numbers
(``maxSteps`` is at most 100), so it never collides with a record of an earlier delivery."""


@dataclass(frozen=True, slots=True)
class Processed:
    """What running a request produced: the answer and the decision records to audit."""

    result: requests.AgentResult
    decisions: Sequence[records.AgentDecision] = ()


Processor = Callable[[requests.AgentRequest], Awaitable[Processed]]
"""Runs one request through the agent (``serving`` builds it around the agent loop)."""


class ResultSink(Protocol):
    """Where a finished request is audited (the audit writer); durable when this returns."""

    async def submit_result(
        self,
        request: requests.AgentRequest,
        result: requests.AgentResult,
        decisions: Sequence[records.AgentDecision] = (),
    ) -> None: ...


class WorkerPool:
    """Reads the agent's stream and runs each entry through ``process``."""

    def __init__(
        self,
        work_queue: queue.WorkQueue,
        process: Processor,
        sink: ResultSink,
        cfg: config.RuntimeConfig,
        *,
        read_block_ms: int = READ_BLOCK_MS,
    ) -> None:
        self._queue = work_queue
        self._process = process
        self._sink = sink
        self._cfg = cfg
        self._workers = cfg.workers
        self._block_ms = read_block_ms
        self._visibility = cfg.workers.visibility_timeout_seconds
        self._running: dict[asyncio.Task[None], str] = {}
        self._answers: batching.Batcher[envelopes.Completion, int] = batching.Batcher(
            work_queue.answer, name="worker-answers"
        )
        self._finishes: batching.Batcher[str, None] = batching.Batcher(
            self._finish_batch, name="worker-acks"
        )
        self._loops: list[asyncio.Task[None]] = []
        self._fetch_task: asyncio.Task[None] | None = None
        self._reclaim_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()
        self._reclaim_now = asyncio.Event()
        self._stopping = False
        self._agent = cfg.agent
        self._inflight = metrics.INFLIGHT.labels(agent=cfg.agent)
        self._duration = metrics.REQUEST_DURATION.labels(agent=cfg.agent)
        self._queue_wait = metrics.QUEUE_WAIT.labels(agent=cfg.agent)
        # Every counter this pool moves exists at 0 from the start, so the first dead letter
        # or failure of a fresh pod is an increase Prometheus can see (an alert on
        # ``increase(...)`` misses a series that appears at 1).
        for status in requests.ResultStatus:
            metrics.REQUESTS.labels(agent=cfg.agent, status=status.value)
        metrics.DEAD_LETTERS.labels(agent=cfg.agent)
        metrics.QUEUE_RECLAIMED.labels(agent=cfg.agent)

    # ------------------------------------------------------------------------- lifecycle

    @property
    def inflight(self) -> int:
        """Requests being processed right now."""
        return len(self._running)

    @property
    def draining(self) -> bool:
        return self._stopping

    @property
    def alive(self) -> bool:
        """The pool's loops are running (a crashed loop makes the pod not ready)."""
        return bool(self._loops) and not any(t.done() for t in self._loops)

    async def start(self) -> None:
        with contextlib.suppress(
            queue.QueueUnavailable, queue.QueueError
        ):  # the fetch loop retries
            await self._queue.ensure_group()
        self._answers.start()
        self._finishes.start()
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name="worker-fetch")
        self._reclaim_task = asyncio.create_task(self._reclaim_loop(), name="worker-reclaim")
        self._renew_task = asyncio.create_task(self._renew_loop(), name="worker-renew")
        self._loops = [self._fetch_task, self._reclaim_task, self._renew_task]

    async def drain(self, grace: float | None = None) -> int:
        """Stop taking work, let in-flight work finish within ``grace`` seconds, give back the
        rest unacknowledged. Returns how many entries were given back."""
        grace = self._workers.shutdown_grace_seconds if grace is None else grace
        self._stopping = True
        self._slot_freed.set()
        for t in (self._fetch_task, self._reclaim_task):
            if t is not None:
                t.cancel()
        tasks = list(self._running)
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        # Everything still pending here (unfinished, or delivered by a read cut short) goes
        # back at once, so another replica need not wait for the visibility timeout.
        given_back = 0
        try:
            given_back = await self._queue.release_all(error="worker shut down before finishing")
        except (queue.QueueUnavailable, queue.QueueError) as e:
            log.warning("cannot give entries back (another replica reclaims them later): %s", e)
        if given_back:
            log.warning("giving back %d unfinished entries for another replica", given_back)
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        await self._answers.stop()
        await self._finishes.stop()
        return given_back

    # --------------------------------------------------------------------------- loops

    async def _fetch_loop(self) -> None:
        backoff = 0.05
        while not self._stopping:
            free = self._workers.concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                deliveries = await self._queue.read(free, block_ms=self._block_ms)
                backoff = 0.05
            except Exception as e:  # the loop must outlive any failure
                _log_loop_failure("read the queue", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._accept(deliveries)

    def _accept(self, deliveries: Sequence[envelopes.Delivery]) -> None:
        if self._stopping:  # read while the drain began: given back by drain()
            return
        for d in deliveries:
            task = asyncio.create_task(self._handle(d), name=f"worker:{d.entry_id}")
            self._running[task] = d.entry_id
            task.add_done_callback(self._done)
        self._inflight.set(len(self._running))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task failed", exc_info=task.exception())
        self._inflight.set(len(self._running))
        self._slot_freed.set()

    async def _reclaim_loop(self) -> None:
        interval = max(0.05, min(self._visibility / 2, RECLAIM_INTERVAL_SECONDS))
        last_prune = time.monotonic()
        first = True
        while not self._stopping:
            if not first:  # at start, take over at once what others gave back
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reclaim_now.wait(), interval)
            first = False
            self._reclaim_now.clear()
            free = self._workers.concurrency - len(self._running)
            if self._stopping or free <= 0:
                continue
            prune = time.monotonic() - last_prune > PRUNE_INTERVAL_SECONDS
            try:
                await self._reclaim_once(free, prune=prune)
            except Exception as e:  # the loop must outlive any failure
                _log_loop_failure("reclaim entries", e, interval)
                continue
            if prune:
                last_prune = time.monotonic()

    async def _reclaim_once(self, free: int, *, prune: bool) -> None:
        claimed = await self._queue.reclaim(free)
        if prune:
            idle = int(max(600.0, 10 * self._visibility) * 1000)
            await self._queue.prune_consumers(idle_ms=idle)
        if claimed:
            metrics.QUEUE_RECLAIMED.labels(agent=self._agent).inc(len(claimed))
        fresh = []
        for d in claimed:
            if d.deliveries > self._workers.max_deliveries:
                await self._dead_letter(d, f"not completed after {d.deliveries - 1} deliveries")
            else:
                fresh.append(d)
        self._accept(fresh)

    async def _renew_loop(self) -> None:
        interval = max(0.05, self._visibility / 3)
        while True:
            await asyncio.sleep(interval)
            ids = sorted(set(self._running.values()))
            if not ids:
                continue
            try:
                lost = await self._queue.renew(ids)
            except Exception as e:  # the loop must outlive any failure
                _log_loop_failure("renew leases", e, interval)
                continue
            if lost:
                log.warning("entries taken over by another worker meanwhile: %s", lost)

    # ----------------------------------------------------------------------- one entry

    async def _finish_batch(self, entry_ids: Sequence[str]) -> list[None]:
        await self._queue.finish(entry_ids)
        return [None] * len(entry_ids)

    async def _handle(self, d: envelopes.Delivery) -> None:
        env = d.envelope
        if env is None:
            await self._failed(d, d.error or "malformed entry")
            return
        request = env.request
        token = telemetry.REQUEST_ID.set(request.request_id)
        carrier = {"traceparent": env.traceparent or "", "tracestate": env.tracestate or ""}
        started = time.time()

        def attributes() -> dict[str, str | int]:
            return {
                "messaging.system": "redis",
                "messaging.operation.type": "process",
                "messaging.destination.name": self._queue.stream,
                "messaging.message.id": d.entry_id,
                "messaging.consumer.group.name": queue.GROUP,
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self._agent,
                "pilothouse.request_id": request.request_id,
                "pilothouse.agent": self._agent,
                "pilothouse.deliveries": d.deliveries,
            }

        try:
            with telemetry.span(
                f"process {self._agent}",
                carrier={k: v for k, v in carrier.items() if v},
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            ) as span:
                if d.deliveries == 1 and env.accepted_at > 0:
                    self._queue_wait.observe(max(0.0, started - env.accepted_at))
                try:
                    await self._answer_and_audit(d, env, span)
                except queue.QueueUnavailable as e:
                    # Left pending: redelivered (and answered or audited) once Redis is back.
                    log.warning("Redis unreachable; the entry stays pending: %s", e)
                except Exception as e:
                    span.record_exception(e)
                    span.set_status(trace.StatusCode.ERROR, type(e).__name__)
                    log.exception("processing failed (delivery %d)", d.deliveries)
                    await self._failed(d, f"{type(e).__name__}: {e}")
        finally:
            telemetry.REQUEST_ID.reset(token)

    async def _run_with_deadline(self, request: requests.AgentRequest) -> Processed:
        deadline = request.timeout_seconds or self._cfg.reliability.request_timeout_seconds
        try:
            async with asyncio.timeout(deadline + DEADLINE_GRACE_SECONDS):  # no extra task
                return await self._process(request)
        except TimeoutError:
            log.error("the agent loop overran the request deadline of %.1fs", deadline)
            return _deadline_fallback(self._cfg, request, deadline)

    async def _answer_and_audit(
        self, d: envelopes.Delivery, env: envelopes.Envelope, span: trace.Span
    ) -> None:
        """Run the request, answer the caller, audit, acknowledge: in that order, so the caller
        does not wait for the audit write, and the entry is acknowledged only once both its
        answer and its audit records are safe. A delivery of an entry answered before (its
        worker died before acknowledging) audits the stored answer instead of running again."""
        request = env.request
        stored = await self._queue.answered_audit(d.entry_id) if d.deliveries > 1 else None
        if stored is None:
            processed = await self._run_with_deadline(request)
            result = requests.attributed(processed.result, request)
            span.set_attribute("pilothouse.result.status", result.status.value)
            result_json = result.model_dump_json().encode()
            outcome = await self._retrying(
                self._answers.submit,
                envelopes.Completion(
                    d.entry_id,
                    request.request_id,
                    result_json,
                    env.reply_to,
                    envelopes.encode_audit(request, result_json, processed.decisions),
                ),
            )
            if outcome < 0:
                log.info("entry acknowledged by another delivery meanwhile; result dropped")
                return
            if outcome == 0:
                log.info("request answered by another delivery; auditing that answer")
                stored = await self._queue.answered_audit(d.entry_id)
                if stored is None:  # that delivery finished meanwhile: nothing left to do
                    return
            else:
                self._answered(env, result)
                await self._sink.submit_result(request, result, processed.decisions)
        if stored is not None:
            await self._sink.submit_result(*envelopes.decode_audit(stored))
        await self._retrying(self._finishes.submit, d.entry_id)

    def _answered(self, env: envelopes.Envelope, result: requests.AgentResult) -> None:
        status = result.status.value
        metrics.REQUESTS.labels(agent=self._agent, status=status).inc()
        if env.accepted_at > 0:
            self._duration.observe(max(0.0, time.time() - env.accepted_at))
        log.info(
            "request answered", extra={"status": status, "latency_ms": round(result.latency_ms, 2)}
        )

    async def _retrying(self, call: Callable[[T], Awaitable[R]], item: T) -> R:
        """``call(item)``, retried while Redis is away, up to the visibility timeout (after that
        another worker will have taken the entry over)."""
        give_up = time.monotonic() + max(self._visibility, 1.0)
        backoff = 0.05
        while True:
            try:
                return await call(item)
            except queue.QueueUnavailable:
                if time.monotonic() + backoff > give_up:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _failed(self, d: envelopes.Delivery, reason: str) -> None:
        """Give the entry another try, or dead-letter it after ``maxDeliveries``."""
        if d.deliveries >= self._workers.max_deliveries:
            await self._dead_letter(d, f"failed after {d.deliveries} deliveries: {reason}")
            return
        with contextlib.suppress(queue.QueueUnavailable, queue.QueueError):
            await self._queue.release([d.entry_id], error=reason)
        self._reclaim_now.set()

    async def _dead_letter(self, d: envelopes.Delivery, reason: str) -> None:
        """Move the entry to the dead-letter stream; its caller gets a ``failed`` answer, which
        is audited (with a ``dead_letter`` decision) when the entry could be decoded. An entry
        answered before keeps its answer and is audited from its stored payload; when that audit
        fails it stays pending instead (dead-lettering would drop the payload)."""
        rid = d.request_id
        failed = None
        if rid is not None:
            failed = requests.AgentResult(
                request_id=rid,
                agent_id=self._agent,
                status=requests.ResultStatus.FAILED,
                answer=self._cfg.fallback.response,
                fallback_reason="dead_lettered",
            )
            if d.envelope is not None:
                failed = requests.attributed(failed, d.envelope.request)
        stored = None
        with contextlib.suppress(queue.QueueUnavailable, queue.QueueError):
            stored = await self._queue.answered_audit(d.entry_id)
        if stored is not None:  # answered before it failed: the answer stands, audit it
            try:
                audit = envelopes.decode_audit(stored)
            except Exception:  # no later delivery could audit it either
                log.exception("cannot read the stored audit of the answered request %s", rid)
            else:
                try:
                    await self._sink.submit_result(*audit)
                except Exception as e:
                    # Dead-lettering would drop the stored audit payload: leave the entry
                    # pending, so the delivery after the visibility timeout audits it again.
                    log.error(
                        "cannot audit the answered request %s; the entry stays pending: %s", rid, e
                    )
                    return
        elif failed is not None and d.envelope is not None:
            decision = records.AgentDecision(
                request_id=failed.request_id,
                agent_id=self._agent,
                step=DEAD_LETTER_STEP,
                action="dead_letter",
                error=reason[:2000],
                outcome="error",
                timestamp=dt.datetime.now(dt.UTC),
            )
            try:
                await self._sink.submit_result(d.envelope.request, failed, (decision,))
            except Exception:
                log.exception("cannot audit the dead-lettered request %s", rid)
        try:
            moved, recorded = await self._queue.dead_letter(
                d, reason, result_json=failed.model_dump_json().encode() if failed else None
            )
        except (queue.QueueUnavailable, queue.QueueError) as e:
            log.error("cannot dead-letter entry %s: %s", d.entry_id, e)
            return
        if moved:
            metrics.DEAD_LETTERS.labels(agent=self._agent).inc()
            if failed is not None and stored is None:
                metrics.REQUESTS.labels(agent=self._agent, status=failed.status.value).inc()
            log.error(
                "entry moved to the dead-letter stream",
                extra={"entry_id": d.entry_id, "reason": recorded, "request": rid},
            )


def _log_loop_failure(what: str, e: Exception, retry_in: float) -> None:
    if isinstance(e, queue.QueueUnavailable):
        log.warning("cannot %s, retrying in %.2fs: %s", what, retry_in, e)
    else:
        log.error("cannot %s, retrying in %.2fs", what, retry_in, exc_info=e)


def _deadline_fallback(
    cfg: config.RuntimeConfig, request: requests.AgentRequest, deadline: float
) -> Processed:
    reason = f"the request did not finish within its deadline of {deadline:g}s"
    result = requests.AgentResult(
        request_id=request.request_id,
        agent_id=cfg.agent,
        status=requests.ResultStatus.FALLBACK,
        answer=cfg.fallback.response,
        fallback_used=True,
        fallback_reason="deadline_exceeded",
        session_id=request.session_id,
    )
    decision = records.AgentDecision(
        request_id=request.request_id,
        agent_id=cfg.agent,
        step=0,
        action="fallback",
        input=request.input,
        error=reason,
        outcome="fallback",
        timestamp=dt.datetime.now(dt.UTC),
    )
    return Processed(result, (decision,))
