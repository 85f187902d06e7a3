"""The fallback chain tells a model's breaker only what a call taught it: a probe whose call
never went out (the request's deadline passed while the breaker was asked) does not close an
open breaker. Local breakers and a deadline that passes mid-attempt: no I/O."""

from __future__ import annotations

from pilothouse.runtime import breaker, config, errors, fallback, llm, retries

MODEL = config.ModelConfig(endpoint="http://llm.invalid/v1", name="m")


class WallClock:
    def __init__(self) -> None:
        self.ms = 1_750_000_000_000

    def time(self) -> float:
        return self.ms / 1000

    def monotonic(self) -> float:
        return self.ms / 1000


class DeadlinePassesAfterTheFirstLook:
    """The request's clock: the deadline is ahead when the attempt starts and behind once the
    breaker answered (as after a slow shared-state round trip)."""

    def __init__(self) -> None:
        self.reads = 0

    def time(self) -> float:
        return 0.0

    def monotonic(self) -> float:
        self.reads += 1
        return 0.0 if self.reads == 1 else 10.0


async def test_a_probe_whose_call_never_went_out_leaves_the_breaker_half_open() -> None:
    wall = WallClock()
    breakers = breaker.CircuitBreakers(
        None,
        config.CircuitBreakerConfig(failure_threshold=1, recovery_timeout_seconds=5),
        key_prefix="t",
        namespace="n",
        agent="a",
        clock=wall,
    )
    await breakers.record(MODEL.key, success=False, probe=False)
    assert (await breakers.state(MODEL.key)).state is breaker.State.OPEN
    wall.ms += 5_000  # past the recovery timeout: the next attempt is a probe
    client = llm.LLMClient()
    chain = fallback.ModelChain(
        [MODEL], client=client, breakers=breakers, retry=config.RetryConfig(), clock=wall
    )
    try:
        outcome = await chain.complete(
            [{"role": "user", "content": "hi"}],
            tools=[],
            deadline=retries.Deadline(1.0, DeadlinePassesAfterTheFirstLook()),
        )
    finally:
        await client.aclose()
    assert outcome.completion is None
    assert outcome.fallback_reason == "deadline_exceeded"
    [attempt] = outcome.attempts
    assert isinstance(attempt.error, errors.DeadlineExceeded)
    state = await breakers.state(MODEL.key)
    assert state.state is breaker.State.HALF_OPEN  # not closed by a call that never happened
    assert state.probes == 1
