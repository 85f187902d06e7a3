"""Retries of transient LLM failures, bounded by attempts, backoff and the request's deadline.

Why: a timeout, a dropped connection, a 429 or a 5xx often succeed a moment later; retrying
them hides blips from users. But a retry must never outlive the request: the deadline of the
request propagates into every call (:class:`Deadline`; a call's timeout is
``min(model timeout, time left)``), and a wait that would pass the deadline is not taken: the
caller moves on to the next model or the rule-based fallback at once.

:func:`plan_retry` is the decision, pure (the random source and the time left are passed in):

* only :class:`errors.TransientLLMError` is retried, at most ``attempts`` attempts in all;
* an empty answer (:class:`errors.LLMEmptyAnswer`) is retried once, at once, if time is left;
* the wait is exponential backoff with full jitter, ``uniform(0, min(max, initial * 2^(n-1)))``;
* a 429's ``Retry-After`` is honoured exactly when it is at most ``maxBackoffSeconds``; a longer
  one is not waited (the model is given up, never slept on without bound, never recursed);
* a wait that would reach the deadline is not taken.

:func:`retrying` wraps the plan in a tenacity controller; :func:`call_with_retries` makes the
first attempt directly (most calls succeed, and tenacity's bookkeeping costs ~0.1 ms) and hands
the retries to tenacity. :mod:`pilothouse.runtime.fallback` calls it for each model; every retry
is counted in ``pilothouse_retries_total``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import tenacity

from pilothouse.runtime import config, errors, metrics

__all__ = ["Clock", "Deadline", "RetryPlan", "call_with_retries", "plan_retry", "retrying"]

T = TypeVar("T")

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Wall time (for records and shared state) and monotonic time (for deadlines).

    The :mod:`time` module itself is a Clock; tests pass their own.
    """

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Deadline:
    """The moment (on ``clock.monotonic()``) by which a request must be answered."""

    at: float
    clock: Clock

    @classmethod
    def within(cls, seconds: float, clock: Clock) -> Deadline:
        return cls(clock.monotonic() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - self.clock.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def timeout_for(self, limit: float) -> float:
        """The timeout of one call: its own limit, cut to the time left."""
        return min(limit, self.remaining())


# Why a plan stops (also the text of decision records).
RETRY: Final = "retry"
NOT_TRANSIENT: Final = "not_transient"
ATTEMPTS_EXHAUSTED: Final = "attempts_exhausted"
RETRY_AFTER_TOO_LONG: Final = "retry_after_too_long"
DEADLINE: Final = "deadline"

EMPTY_ANSWER_ATTEMPTS: Final = 2
"""An empty answer is asked again once (the same model, the same deadline)."""


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """What to do after a failed attempt: wait ``wait`` seconds and retry, or give up."""

    wait: float | None
    reason: str
    """``retry``, ``not_transient``, ``attempts_exhausted``, ``retry_after_too_long``,
    ``deadline``."""

    @property
    def retry(self) -> bool:
        return self.wait is not None

    def describe(self) -> str:
        """For decision records: ``retry in 0.42s`` or ``not retried: deadline``."""
        return (
            f"retry in {self.wait:.3f}s" if self.wait is not None else f"not retried: {self.reason}"
        )


def backoff_cap(attempts_made: int, cfg: config.RetryConfig) -> float:
    """Upper bound of the jittered wait after ``attempts_made`` attempts."""
    exponent = min(attempts_made - 1, 60)  # 2**60 * anything positive exceeds every max
    return float(min(cfg.max_backoff_seconds, cfg.initial_backoff_seconds * 2**exponent))


def plan_retry(
    error: BaseException,
    attempts_made: int,
    cfg: config.RetryConfig,
    rng: random.Random,
    time_left: float,
) -> RetryPlan:
    """Whether and when to retry after ``attempts_made`` attempts, the last one failing
    with ``error``; ``time_left`` is the time until the request's deadline."""
    if isinstance(error, errors.LLMEmptyAnswer):
        if attempts_made >= EMPTY_ANSWER_ATTEMPTS:
            return RetryPlan(None, ATTEMPTS_EXHAUSTED)
        return RetryPlan(0.0, RETRY) if time_left > 0 else RetryPlan(None, DEADLINE)
    if not isinstance(error, errors.TransientLLMError):
        return RetryPlan(None, NOT_TRANSIENT)
    if attempts_made >= cfg.attempts:
        return RetryPlan(None, ATTEMPTS_EXHAUSTED)
    if isinstance(error, errors.LLMRateLimited) and error.retry_after is not None:
        if error.retry_after > cfg.max_backoff_seconds:
            return RetryPlan(None, RETRY_AFTER_TOO_LONG)
        wait = max(0.0, error.retry_after)
    else:
        wait = rng.uniform(0.0, backoff_cap(attempts_made, cfg))
    if wait >= time_left:
        return RetryPlan(None, DEADLINE)
    return RetryPlan(wait, RETRY)


def retrying(
    cfg: config.RetryConfig,
    deadline: Deadline,
    rng: random.Random,
    *,
    on_plan: Callable[[RetryPlan], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    attempts_made: int = 0,
) -> tenacity.AsyncRetrying:
    """A tenacity controller following :func:`plan_retry`; re-raises the last error.

    Use as ``async for attempt in retrying(...): with attempt: await call()``. Every
    :class:`errors.LLMError` is shown to the plan (``on_plan`` sees each one, e.g. to annotate
    the decision record of the failed attempt); anything else propagates at once.
    ``attempts_made`` counts attempts made before this controller took over.
    """
    plan: list[RetryPlan] = [RetryPlan(None, NOT_TRANSIENT)]

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        plan[0] = plan_retry(
            error or RuntimeError("no outcome"),
            state.attempt_number + attempts_made,
            cfg,
            rng,
            deadline.remaining(),
        )
        if on_plan is not None:
            on_plan(plan[0])
        return plan[0].wait or 0.0

    def stop(state: tenacity.RetryCallState) -> bool:
        return not plan[0].retry

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        _note_retry(
            outcome.exception() if outcome is not None else None,
            state.upcoming_sleep,
            state.attempt_number + attempts_made + 1,
        )

    return tenacity.AsyncRetrying(
        sleep=sleep,
        wait=wait,
        stop=stop,
        retry=tenacity.retry_if_exception_type(errors.LLMError),
        before_sleep=before_sleep,
        reraise=True,
    )


def _note_retry(error: BaseException | None, wait: float, next_attempt: int) -> None:
    metrics.LLM_RETRIES.inc()
    log.info("LLM call failed (%s), retrying in %.3fs (attempt %d)", error, wait, next_attempt)


async def call_with_retries(
    call: Callable[[int], Awaitable[T]],
    cfg: config.RetryConfig,
    deadline: Deadline,
    rng: random.Random,
    *,
    on_plan: Callable[[RetryPlan], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``await call(attempt_number)`` until it succeeds or :func:`plan_retry` gives up (then the
    last :class:`errors.LLMError` is raised). The first attempt runs outside tenacity."""
    try:
        return await call(1)
    except errors.LLMError as e:
        plan = plan_retry(e, 1, cfg, rng, deadline.remaining())
        if on_plan is not None:
            on_plan(plan)
        if plan.wait is None:
            raise
        _note_retry(e, plan.wait, 2)
        await sleep(plan.wait)
    results: list[T] = []
    async for attempt in retrying(
        cfg, deadline, rng, on_plan=on_plan, sleep=sleep, attempts_made=1
    ):
        with attempt:
            results.append(await call(attempt.retry_state.attempt_number + 1))
    return results[-1]
