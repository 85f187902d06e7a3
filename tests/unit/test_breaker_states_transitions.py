"""The circuit breaker's state machine, with time passed in: the failure rate over a sliding
window (minimum calls, minimum failures, buckets sliding out), every transition, half-open probe
limits, and lost probes being given up."""

from __future__ import annotations

import pytest

from pilothouse.runtime import breaker, config

State = breaker.State
Event = breaker.BreakerEvent

SETTINGS = breaker.BreakerSettings(
    failure_threshold=3,
    window_ms=10_000,
    recovery_ms=5_000,
    half_open_max_probes=2,
    failure_rate_bp=5_000,
    minimum_calls=4,
)


def run(
    events: list[tuple[Event, int]],
    state: breaker.BreakerState = breaker.CLOSED,
    settings: breaker.BreakerSettings = SETTINGS,
) -> tuple[breaker.BreakerState, list[breaker.BreakerDecision]]:
    decisions = []
    for event, now in events:
        state, decision = breaker.transition(state, event, now, settings)
        decisions.append(decision)
    return state, decisions


def calls(outcomes: str, start: int = 0, step: int = 1) -> list[tuple[Event, int]]:
    """One call per letter: ``s`` succeeds (acquire only), ``f`` fails (acquire, failure)."""
    events: list[tuple[Event, int]] = []
    for i, o in enumerate(outcomes):
        now = start + i * step
        events.append((Event.ACQUIRE, now))
        if o == "f":
            events.append((Event.FAILURE, now))
    return events


def opened_at(now: int) -> breaker.BreakerState:
    state, _ = run(calls("ffff", start=now, step=0))
    assert state.state is State.OPEN
    return state


def test_closed_allows_calls_counts_them_and_ignores_successes() -> None:
    state, decisions = run([(Event.ACQUIRE, 1), (Event.SUCCESS, 2), (Event.ACQUIRE, 3)])
    assert state.state is State.CLOSED
    assert all(d.allowed and not d.probe and not d.changed for d in decisions)
    assert decisions[-1].calls == 2
    assert decisions[-1].failures == 0


def test_a_failure_rate_at_the_threshold_opens_it() -> None:
    state, decisions = run(calls("sfsfsf"))
    assert state.state is State.OPEN
    assert state.opened_at == 5
    assert decisions[-1].changed
    assert decisions[-1].previous is State.CLOSED
    assert state.window == ()


def test_a_rate_below_the_threshold_never_opens_it_however_many_failures() -> None:
    # 30 % of 200 calls fail: 60 failures, far more than a count threshold would allow.
    state, decisions = run(calls("ssfssfsssf" * 20, step=10))
    assert state.state is State.CLOSED
    assert not any(d.changed for d in decisions)


def test_fewer_calls_than_the_minimum_do_not_open_it() -> None:
    state, _ = run(calls("fff"))
    assert state.state is State.CLOSED
    state, _ = run(calls("f", start=3), state)  # the fourth call: now the rate counts
    assert state.state is State.OPEN


def test_fewer_failures_than_the_minimum_do_not_open_it() -> None:
    settings = breaker.BreakerSettings(3, 10_000, 5_000, 1, failure_rate_bp=5_000, minimum_calls=1)
    state, _ = run(calls("ff"), settings=settings)
    assert state.state is State.CLOSED
    state, _ = run(calls("f", start=2), state, settings)
    assert state.state is State.OPEN


def test_calls_and_failures_older_than_the_window_slide_out() -> None:
    # Three failures early; by 12 s their bucket is out of the 10 s window.
    state, _ = run(calls("fff", step=100))
    state, decisions = run(calls("ssf", start=12_000), state)
    assert state.state is State.CLOSED
    assert (decisions[-1].calls, decisions[-1].failures) == (3, 1)


def test_the_window_is_kept_in_buckets() -> None:
    state, _ = run(calls("sss", start=0, step=400) + calls("sf", start=1_500, step=1))
    # bucket of 1 s (10 s / 10): [0, 1000) holds 3 calls, [1000, 2000) holds 2 and 1 failure
    assert state.window == ((0, 3, 0), (1_000, 2, 1))


def test_a_failure_without_a_counted_call_still_counts_as_one() -> None:
    settings = breaker.BreakerSettings(1, 1_000, 1_000, 1, failure_rate_bp=5_000, minimum_calls=1)
    state, _ = run([(Event.FAILURE, 5)], settings=settings)
    assert state.state is State.OPEN


@pytest.mark.parametrize(
    ("failures", "calls_made", "opens"),
    [(10, 20, True), (9, 20, False), (20, 20, True), (5, 4, True), (0, 100, False)],
)
def test_the_rate_is_compared_exactly(failures: int, calls_made: int, opens: bool) -> None:
    settings = breaker.BreakerSettings(1, 1_000, 1_000, 1, failure_rate_bp=5_000, minimum_calls=4)
    assert breaker.failure_rate_reached(calls_made, failures, settings) is opens


def test_open_refuses_calls_until_the_recovery_timeout() -> None:
    state = opened_at(1_000)
    state, decisions = run([(Event.ACQUIRE, 1_001), (Event.ACQUIRE, 5_999)], state)
    assert state.state is State.OPEN
    assert [d.allowed for d in decisions] == [False, False]
    assert decisions[0].retry_in_ms == 4_999
    assert decisions[1].retry_in_ms == 1


def test_late_outcomes_do_not_change_an_open_breaker() -> None:
    state = opened_at(1_000)
    after, _ = run([(Event.FAILURE, 2_000), (Event.SUCCESS, 3_000)], state)
    assert after == state


def test_after_the_recovery_timeout_probes_go_through_up_to_the_limit() -> None:
    state = opened_at(1_000)
    state, decisions = run(
        [(Event.ACQUIRE, 6_000), (Event.ACQUIRE, 6_001), (Event.ACQUIRE, 6_002)], state
    )
    assert state.state is State.HALF_OPEN
    assert [(d.allowed, d.probe) for d in decisions] == [(True, True), (True, True), (False, False)]
    assert decisions[0].changed
    assert decisions[0].previous is State.OPEN
    assert decisions[2].retry_in_ms == 6_000 + SETTINGS.recovery_ms - 6_002
    assert state.probes == 2


def test_a_successful_probe_closes_it() -> None:
    state = opened_at(0)
    state, decisions = run([(Event.ACQUIRE, 5_000), (Event.SUCCESS, 5_100)], state)
    assert state == breaker.CLOSED
    assert decisions[-1].changed
    assert decisions[-1].state is State.CLOSED


def test_a_failed_probe_opens_it_again_with_a_new_recovery_timeout() -> None:
    state = opened_at(0)
    state, decisions = run([(Event.ACQUIRE, 5_000), (Event.FAILURE, 5_500)], state)
    assert state.state is State.OPEN
    assert state.opened_at == 5_500
    state, decisions = run([(Event.ACQUIRE, 10_000), (Event.ACQUIRE, 10_500)], state)
    assert [d.allowed for d in decisions] == [False, True]


def test_lost_probes_are_given_up_after_a_recovery_timeout() -> None:
    # Two probes went out and their replicas died: nobody will ever report.
    state = opened_at(0)
    state, _ = run([(Event.ACQUIRE, 5_000), (Event.ACQUIRE, 5_001)], state)
    state, decisions = run([(Event.ACQUIRE, 9_999), (Event.ACQUIRE, 10_000)], state)
    assert [(d.allowed, d.probe) for d in decisions] == [(False, False), (True, True)]
    assert state.state is State.HALF_OPEN
    assert state.probes == 1
    assert state.probe_since == 10_000


def test_a_closed_breaker_after_a_probe_starts_with_a_fresh_window() -> None:
    state = opened_at(0)
    state, _ = run([(Event.ACQUIRE, 5_000), (Event.SUCCESS, 5_100)], state)
    state, decisions = run(calls("f", start=5_200), state)
    assert state.state is State.CLOSED
    assert (decisions[-1].calls, decisions[-1].failures) == (1, 1)


def test_the_input_state_is_not_mutated() -> None:
    state = opened_at(0)
    copy = breaker.BreakerState(**{f: getattr(state, f) for f in state.__slots__})
    breaker.transition(state, Event.ACQUIRE, 99_999, SETTINGS)
    assert state == copy


@pytest.mark.parametrize(
    ("window", "recovery", "expected"),
    [(60.0, 30.0, (60_000, 30_000)), (0.25, 0.1, (250, 100))],
)
def test_settings_from_config_are_milliseconds(
    window: float, recovery: float, expected: tuple[int, int]
) -> None:
    cfg = config.CircuitBreakerConfig(
        failure_threshold=4,
        window_seconds=window,
        recovery_timeout_seconds=recovery,
        half_open_max_probes=3,
        failure_rate_threshold=37.5,
        minimum_calls=12,
    )
    settings = breaker.BreakerSettings.from_config(cfg)
    assert (settings.window_ms, settings.recovery_ms) == expected
    assert (settings.failure_threshold, settings.half_open_max_probes) == (4, 3)
    assert (settings.failure_rate_bp, settings.minimum_calls) == (3_750, 12)
    assert settings.bucket_ms == expected[0] // breaker.WINDOW_BUCKETS
