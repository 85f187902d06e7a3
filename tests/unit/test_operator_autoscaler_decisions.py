"""The autoscaler's decision: bounds, immediate scale-up, stabilized scale-down, step limits,
and holding when the backlog is unknown. Time is passed in; nothing sleeps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from pilothouse.operator import api, autoscaling

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _spec(**kw: int | None) -> api.ScalingSpec:
    values = {
        "min_replicas": 1,
        "max_replicas": 10,
        "target_queue_depth_per_replica": 10,
        "scale_down_stabilization_seconds": 60,
    }
    values.update(kw)
    return api.ScalingSpec(**values)  # type: ignore[arg-type]


def _run(
    spec: api.ScalingSpec, backlogs: Sequence[int | None], *, start: int, every: float = 5
) -> list[autoscaling.Decision]:
    """Feed backlogs one tick apart, applying each decision, as the operator's timer does."""
    decisions, history, current = [], (), start
    for i, backlog in enumerate(backlogs):
        decision = autoscaling.desired_replicas(
            backlog, spec, history, T0 + timedelta(seconds=i * every), current=current
        )
        decisions.append(decision)
        history, current = decision.history, decision.replicas
    return decisions


@pytest.mark.parametrize(
    ("backlog", "expected"),
    [(0, 1), (1, 1), (10, 1), (11, 2), (57, 6), (100, 10), (10_000, 10)],
)
def test_recommendation_is_the_ceiling_clamped_to_the_bounds(backlog: int, expected: int) -> None:
    decision = autoscaling.desired_replicas(backlog, _spec(), (), T0, current=1)

    assert decision.recommended == expected


def test_minimum_is_kept_even_with_an_empty_queue() -> None:
    decision = autoscaling.desired_replicas(0, _spec(min_replicas=3), (), T0, current=3)

    assert decision.replicas == 3
    assert decision.reason == autoscaling.STEADY
    assert not decision.changed


def test_scale_up_is_immediate() -> None:
    decision = autoscaling.desired_replicas(57, _spec(), (), T0, current=1)

    assert decision.replicas == 6
    assert decision.reason == autoscaling.SCALED_UP
    assert decision.changed
    assert "backlog 57" in decision.message
    assert "1 -> 6" in decision.message


def test_scale_up_step_limit_takes_several_decisions() -> None:
    decisions = _run(_spec(max_scale_up_step=2), [100, 100, 100, 100, 100], start=1)

    assert [d.replicas for d in decisions] == [3, 5, 7, 9, 10]
    assert [d.reason for d in decisions[:4]] == [autoscaling.SCALE_UP_LIMITED] * 4
    assert decisions[4].reason == autoscaling.SCALED_UP


def test_scale_down_waits_for_the_whole_stabilization_window() -> None:
    # 60 s window, a tick every 5 s: high at t=0, then empty from t=5 on.
    decisions = _run(_spec(), [80] + [0] * 14, start=1)

    replicas = [d.replicas for d in decisions]
    assert replicas[0] == 8
    # t=5..55: the t=0 recommendation of 8 is still inside the window -> hold.
    assert replicas[1:12] == [8] * 11
    assert {d.reason for d in decisions[1:12]} == {autoscaling.STABILIZING}
    # t=60: the 8 left the window (entries must be strictly newer than now - 60 s).
    assert replicas[12] == 1
    assert decisions[12].reason == autoscaling.SCALED_DOWN


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    # t=0: 80 (8), t=30: 40 (4), then empty: at t=60 the 8 is gone but the 4 is not.
    backlogs = [80, 0, 0, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    decisions = _run(_spec(), backlogs, start=1)

    replicas = [d.replicas for d in decisions]
    assert replicas[12] == 4  # t=60
    assert decisions[12].reason == autoscaling.SCALED_DOWN
    assert replicas[17] == 4  # t=85: the 4 from t=30 is still in the window
    assert replicas[18] == 1  # t=90


def test_a_blip_within_the_window_keeps_the_replicas() -> None:
    backlogs = [80, 0, 0, 0, 80, 0, 0, 0, 0, 0]
    decisions = _run(_spec(), backlogs, start=1)

    assert [d.replicas for d in decisions] == [8] * 10


def test_zero_window_scales_down_at_once() -> None:
    decisions = _run(_spec(scale_down_stabilization_seconds=0), [80, 0], start=1)

    assert [d.replicas for d in decisions] == [8, 1]


def test_a_fresh_start_counts_the_current_replicas_as_a_recent_recommendation() -> None:
    # The operator restarted: no history, 6 replicas running, queue empty -> hold a full window.
    decisions = _run(_spec(), [0] * 13, start=6)

    assert [d.replicas for d in decisions[:12]] == [6] * 12
    assert decisions[12].replicas == 1


def test_unknown_backlog_holds_the_current_count() -> None:
    history = (autoscaling.Recommendation(T0, 4),)

    decision = autoscaling.desired_replicas(
        None, _spec(), history, T0 + timedelta(seconds=99), current=4
    )

    assert decision.replicas == 4
    assert decision.recommended is None
    assert decision.reason == autoscaling.BACKLOG_UNKNOWN
    assert not decision.changed
    assert decision.history == history  # nothing learnt, nothing forgotten


def test_unknown_backlog_still_enforces_the_bounds() -> None:
    above = autoscaling.desired_replicas(None, _spec(max_replicas=3), (), T0, current=5)
    below = autoscaling.desired_replicas(None, _spec(min_replicas=2), (), T0, current=1)

    assert (above.replicas, below.replicas) == (3, 2)
    assert above.changed
    assert below.changed


def test_replicas_outside_new_bounds_move_inside_at_once() -> None:
    history = tuple(autoscaling.Recommendation(T0 - timedelta(seconds=s), 9) for s in (1, 2))

    lowered_max = autoscaling.desired_replicas(90, _spec(max_replicas=4), history, T0, current=9)
    raised_min = autoscaling.desired_replicas(0, _spec(min_replicas=5), (), T0, current=2)
    step_limited = autoscaling.desired_replicas(
        0, _spec(min_replicas=5, max_scale_up_step=1), (), T0, current=2
    )

    assert lowered_max.replicas == 4
    assert raised_min.replicas == 5
    assert step_limited.replicas == 5  # the bounds win over the step


def test_history_keeps_only_the_window() -> None:
    decisions = _run(_spec(scale_down_stabilization_seconds=20), [30] * 10, start=3)

    assert all(len(d.history) <= 5 for d in decisions)  # 20 s / 5 s per tick, plus now
    assert decisions[-1].history[-1] == autoscaling.Recommendation(T0 + timedelta(seconds=45), 3)


def test_the_decision_does_not_touch_its_inputs() -> None:
    history = [autoscaling.Recommendation(T0, 2)]

    autoscaling.desired_replicas(80, _spec(), history, T0 + timedelta(seconds=1), current=2)

    assert history == [autoscaling.Recommendation(T0, 2)]


@pytest.mark.parametrize(("backlog", "current"), [(-1, 1), (1, -1)])
def test_negative_inputs_are_refused(backlog: int, current: int) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        autoscaling.desired_replicas(backlog, _spec(), (), T0, current=current)
