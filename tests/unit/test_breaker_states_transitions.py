"""The circuit breaker's state machine, with time passed in: every transition, the sliding
failure window, half-open probe limits, and lost probes being given up."""

from __future__ import annotations

import pytest

from pilothouse.runtime import breaker, config

State = breaker.State
Event = breaker.BreakerEvent

SETTINGS = breaker.BreakerSettings(
    failure_threshold=3, window_ms=10_000, recovery_ms=5_000, half_open_max_probes=2
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


def opened_at(now: int) -> breaker.BreakerState:
    state, _ = run([(Event.FAILURE, now)] * SETTINGS.failure_threshold)
    assert state.state is State.OPEN
    return state


def test_closed_allows_calls_and_ignores_successes() -> None:
    state, decisions = run([(Event.ACQUIRE, 1), (Event.SUCCESS, 2), (Event.ACQUIRE, 3)])
    assert state == breaker.CLOSED
    assert all(d.allowed and not d.probe and not d.changed for d in decisions)


def test_threshold_failures_within_the_window_open_it() -> None:
    state, decisions = run([(Event.FAILURE, 0), (Event.FAILURE, 4_000), (Event.FAILURE, 9_999)])
    assert state.state is State.OPEN
    assert state.opened_at == 9_999
    assert [d.state for d in decisions] == [State.CLOSED, State.CLOSED, State.OPEN]
    assert decisions[-1].changed
    assert decisions[-1].previous is State.CLOSED
    assert state.failures == ()


def test_failures_older_than_the_window_do_not_count() -> None:
    state, decisions = run([(Event.FAILURE, 0), (Event.FAILURE, 4_000), (Event.FAILURE, 10_000)])
    assert state.state is State.CLOSED
    assert state.failures == (4_000, 10_000)
    assert decisions[-1].failures == 2


def test_a_success_does_not_reset_the_failure_window() -> None:
    state, _ = run([(Event.FAILURE, 0), (Event.SUCCESS, 1), (Event.FAILURE, 2), (Event.FAILURE, 3)])
    assert state.state is State.OPEN


def test_threshold_of_one_opens_on_the_first_failure() -> None:
    settings = breaker.BreakerSettings(1, 1_000, 1_000, 1)
    state, _ = run([(Event.FAILURE, 5)], settings=settings)
    assert state.state is State.OPEN


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
    )
    settings = breaker.BreakerSettings.from_config(cfg)
    assert (settings.window_ms, settings.recovery_ms) == expected
    assert (settings.failure_threshold, settings.half_open_max_probes) == (4, 3)
