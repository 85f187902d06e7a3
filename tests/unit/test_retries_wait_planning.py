"""When and how long the loop waits before retrying an LLM call: full-jitter backoff,
Retry-After honoured but bounded, never past the request's deadline, only transient errors."""

from __future__ import annotations

import random

import pytest
from prometheus_client import REGISTRY

from pilothouse.runtime import config, errors, retries

CFG = config.RetryConfig(attempts=4, initial_backoff_seconds=1.0, max_backoff_seconds=5.0)
FAR = 1_000.0


def server_error() -> errors.LLMError:
    return errors.LLMServerError("HTTP 503", model="m", status=503)


def rate_limited(after: float | None) -> errors.LLMError:
    return errors.LLMRateLimited("HTTP 429", model="m", retry_after=after)


@pytest.mark.parametrize(("attempts_made", "cap"), [(1, 1.0), (2, 2.0), (3, 4.0)])
def test_backoff_is_full_jitter_under_an_exponential_cap(attempts_made: int, cap: float) -> None:
    rng = random.Random(7)
    waits = [
        retries.plan_retry(server_error(), attempts_made, CFG, rng, FAR).wait for _ in range(500)
    ]
    assert all(w is not None and 0.0 <= w <= cap for w in waits)
    # Full jitter spreads over the whole range, not just near the cap.
    assert min(w for w in waits if w is not None) < cap * 0.1
    assert max(w for w in waits if w is not None) > cap * 0.9


def test_the_cap_never_exceeds_max_backoff() -> None:
    cfg = config.RetryConfig(attempts=10, initial_backoff_seconds=1.0, max_backoff_seconds=3.0)
    assert retries.backoff_cap(9, cfg) == 3.0
    assert retries.backoff_cap(1_000, cfg) == 3.0


def test_attempts_are_bounded() -> None:
    plan = retries.plan_retry(server_error(), CFG.attempts, CFG, random.Random(1), FAR)
    assert not plan.retry
    assert plan.reason == retries.ATTEMPTS_EXHAUSTED


@pytest.mark.parametrize(
    "error",
    [
        errors.LLMRequestRejected("HTTP 400", model="m", status=400),
        errors.LLMMalformedResponse("cut JSON", model="m"),
        errors.CircuitOpen("open", model="m"),
        errors.DeadlineExceeded("late", model="m"),
        ValueError("a bug"),
    ],
)
def test_only_transient_errors_are_retried(error: BaseException) -> None:
    plan = retries.plan_retry(error, 1, CFG, random.Random(1), FAR)
    assert (plan.wait, plan.reason) == (None, retries.NOT_TRANSIENT)


@pytest.mark.parametrize(
    "error",
    [
        errors.LLMTimeout("slow", model="m"),
        errors.LLMConnectionError("refused", model="m"),
        errors.LLMServerError("HTTP 502", model="m", status=502),
        rate_limited(None),
    ],
)
def test_transient_errors_are_retried(error: errors.LLMError) -> None:
    plan = retries.plan_retry(error, 1, CFG, random.Random(1), FAR)
    assert plan.retry
    assert plan.reason == retries.RETRY


def test_retry_after_is_waited_exactly() -> None:
    plan = retries.plan_retry(rate_limited(2.5), 1, CFG, random.Random(1), FAR)
    assert plan.wait == 2.5


def test_retry_after_longer_than_max_backoff_is_not_waited() -> None:
    plan = retries.plan_retry(rate_limited(30.0), 1, CFG, random.Random(1), FAR)
    assert (plan.wait, plan.reason) == (None, retries.RETRY_AFTER_TOO_LONG)


def test_retry_after_past_the_deadline_fails_fast() -> None:
    plan = retries.plan_retry(rate_limited(3.0), 1, CFG, random.Random(1), time_left=2.0)
    assert (plan.wait, plan.reason) == (None, retries.DEADLINE)


def test_a_backoff_past_the_deadline_fails_fast() -> None:
    # attempts_made=3: the jittered wait is in [0, 4]; with 1 ms left no wait fits.
    plan = retries.plan_retry(server_error(), 3, CFG, random.Random(3), time_left=0.001)
    assert (plan.wait, plan.reason) == (None, retries.DEADLINE)
    # With 0.5 s left, a wait that fits is taken and one that does not is refused.
    reasons = set()
    for seed in range(50):
        plan = retries.plan_retry(server_error(), 3, CFG, random.Random(seed), time_left=0.5)
        drawn = random.Random(seed).uniform(0.0, retries.backoff_cap(3, CFG))
        if drawn < 0.5:
            assert (plan.wait, plan.reason) == (drawn, retries.RETRY)
        else:
            assert (plan.wait, plan.reason) == (None, retries.DEADLINE)
        reasons.add(plan.reason)
    assert reasons == {retries.RETRY, retries.DEADLINE}


def test_retry_after_zero_retries_at_once() -> None:
    plan = retries.plan_retry(rate_limited(0.0), 1, CFG, random.Random(1), FAR)
    assert plan.wait == 0.0


def test_plans_describe_themselves_for_decision_records() -> None:
    assert retries.RetryPlan(0.5, retries.RETRY).describe() == "retry in 0.500s"
    assert retries.RetryPlan(None, retries.DEADLINE).describe() == "not retried: deadline"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now


def test_deadline_cuts_call_timeouts_to_the_time_left() -> None:
    clock = FakeClock()
    deadline = retries.Deadline.within(3.0, clock)
    assert deadline.timeout_for(10.0) == 3.0
    assert deadline.timeout_for(1.0) == 1.0
    clock.now += 2.5
    assert deadline.timeout_for(10.0) == pytest.approx(0.5)
    assert not deadline.expired
    clock.now += 0.5
    assert deadline.expired
    assert deadline.timeout_for(10.0) <= 0


def retries_total() -> float:
    return REGISTRY.get_sample_value("pilothouse_retries_total") or 0.0


async def test_the_controller_retries_up_to_the_attempts_and_reraises() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    plans: list[retries.RetryPlan] = []
    calls = 0
    before = retries_total()
    deadline = retries.Deadline.within(FAR, FakeClock())

    async def call() -> None:
        nonlocal calls
        async for attempt in retries.retrying(
            CFG, deadline, random.Random(5), on_plan=plans.append, sleep=sleep
        ):
            with attempt:
                calls += 1
                raise server_error()

    with pytest.raises(errors.LLMServerError):
        await call()
    assert calls == CFG.attempts
    assert len(slept) == CFG.attempts - 1
    assert retries_total() - before == CFG.attempts - 1
    assert [p.reason for p in plans] == [retries.RETRY] * 3 + [retries.ATTEMPTS_EXHAUSTED]


async def test_the_controller_waits_out_retry_after_then_returns() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    outcomes: list[str] = []
    deadline = retries.Deadline.within(FAR, FakeClock())
    async for attempt in retries.retrying(CFG, deadline, random.Random(5), sleep=sleep):
        with attempt:
            if not outcomes:
                outcomes.append("429")
                raise rate_limited(1.0)
            outcomes.append("ok")
    assert outcomes == ["429", "ok"]
    assert slept == [1.0]


async def test_the_controller_lets_other_exceptions_through_at_once() -> None:
    calls = 0
    deadline = retries.Deadline.within(FAR, FakeClock())

    async def call() -> None:
        nonlocal calls
        async for attempt in retries.retrying(CFG, deadline, random.Random(5)):
            with attempt:
                calls += 1
                raise KeyError("bug")

    with pytest.raises(KeyError):
        await call()
    assert calls == 1


async def test_call_with_retries_numbers_attempts_and_counts_each_retry() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    seen: list[int] = []

    async def call(attempt: int) -> str:
        seen.append(attempt)
        if attempt < 3:
            raise server_error()
        return "answer"

    plans: list[retries.RetryPlan] = []
    before = retries_total()
    deadline = retries.Deadline.within(FAR, FakeClock())
    result = await retries.call_with_retries(
        call, CFG, deadline, random.Random(2), on_plan=plans.append, sleep=sleep
    )
    assert result == "answer"
    assert seen == [1, 2, 3]
    assert len(slept) == 2
    assert [p.reason for p in plans] == [retries.RETRY, retries.RETRY]
    assert retries_total() - before == 2


async def test_call_with_retries_gives_up_with_the_last_error() -> None:
    seen: list[int] = []

    async def call(attempt: int) -> str:
        seen.append(attempt)
        raise errors.LLMRequestRejected(f"HTTP 400 #{attempt}", model="m", status=400)

    deadline = retries.Deadline.within(FAR, FakeClock())
    with pytest.raises(errors.LLMRequestRejected, match="#1"):
        await retries.call_with_retries(call, CFG, deadline, random.Random(2))
    assert seen == [1]


async def test_call_with_retries_stops_at_the_attempt_limit() -> None:
    seen: list[int] = []

    async def call(attempt: int) -> str:
        seen.append(attempt)
        raise errors.LLMTimeout(f"slow #{attempt}", model="m")

    async def no_sleep(seconds: float) -> None:
        return None

    deadline = retries.Deadline.within(FAR, FakeClock())
    with pytest.raises(errors.LLMTimeout, match=f"#{CFG.attempts}"):
        await retries.call_with_retries(call, CFG, deadline, random.Random(2), sleep=no_sleep)
    assert seen == list(range(1, CFG.attempts + 1))


def empty_answer() -> errors.LLMError:
    return errors.LLMEmptyAnswer("empty answer", model="m")


def test_an_empty_answer_is_asked_again_once_at_once() -> None:
    rng = random.Random(1)
    one_attempt = config.RetryConfig(attempts=1)

    first = retries.plan_retry(empty_answer(), 1, one_attempt, rng, FAR)
    second = retries.plan_retry(empty_answer(), 2, CFG, rng, FAR)

    assert (first.wait, first.reason) == (0.0, retries.RETRY)
    assert (second.wait, second.reason) == (None, retries.ATTEMPTS_EXHAUSTED)


def test_an_empty_answer_is_not_asked_again_past_the_deadline() -> None:
    plan = retries.plan_retry(empty_answer(), 1, CFG, random.Random(1), 0.0)

    assert (plan.wait, plan.reason) == (None, retries.DEADLINE)


@pytest.mark.parametrize(
    "error",
    [
        errors.LLMRequestInvalid("HTTP 500: type must be string", model="m", status=500),
        errors.LLMContextOverflow("HTTP 400: maximum context length", model="m", status=400),
    ],
)
def test_errors_the_request_caused_are_not_retried(error: errors.LLMError) -> None:
    plan = retries.plan_retry(error, 1, CFG, random.Random(1), FAR)

    assert (plan.wait, plan.reason) == (None, retries.NOT_TRANSIENT)
