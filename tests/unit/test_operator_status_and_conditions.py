"""Status is computed purely from what reconcile saw; conditions change time only when flipping."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.operator import autoscaling, conditions, labels, statuses

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _set(
    conds: tuple[conditions.Condition, ...],
    type_: str,
    status: str,
    reason: str,
    now: datetime,
    generation: int = 1,
) -> tuple[conditions.Condition, ...]:
    return conditions.set_condition(
        conds,
        type_=type_,
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=f"{reason}!",
        observed_generation=generation,
        now=now,
    )


# ------------------------------------------------------------------------------- conditions


def test_last_transition_time_moves_only_when_the_status_flips() -> None:
    first = _set((), "Ready", "False", "RolloutInProgress", T0)
    same_status_new_reason = _set(first, "Ready", "False", "PolicyNotFound", T1, generation=2)
    flipped = _set(same_status_new_reason, "Ready", "True", "Available", T1 + timedelta(seconds=1))

    assert first[0].last_transition_time == "2026-01-01T12:00:00Z"
    assert same_status_new_reason[0].last_transition_time == "2026-01-01T12:00:00Z"
    assert same_status_new_reason[0].reason == "PolicyNotFound"
    assert same_status_new_reason[0].observed_generation == 2
    assert flipped[0].last_transition_time == "2026-01-01T12:05:01Z"


def test_conditions_keep_a_stable_order_and_the_input_is_untouched() -> None:
    conds = _set((), "Stalled", "False", "Reconciled", T0)
    conds2 = _set(conds, "ScalingActive", "True", "BacklogRead", T0)
    conds3 = _set(conds2, "Ready", "True", "Available", T0)

    assert [c.type for c in conds3] == ["Ready", "Stalled", "ScalingActive"]
    assert [c.type for c in conds] == ["Stalled"]


def test_find_is_true_and_remove() -> None:
    conds = _set((), "Ready", "True", "Available", T0)

    assert conditions.is_true(conds, "Ready")
    assert not conditions.is_true(conds, "Stalled")
    assert conditions.remove_condition(conds, "Ready") == ()


# ---------------------------------------------------------------------------- agent status


def _deployment(
    *,
    want: int,
    ready: int,
    updated: int,
    replicas: int | None = None,
    config_hash: str = "abc",
    generation: int = 2,
    observed: int = 2,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {
            "replicas": want,
            "template": {"metadata": {"annotations": {labels.CONFIG_HASH_ANNOTATION: config_hash}}},
        },
        "status": {
            "observedGeneration": observed,
            "replicas": want if replicas is None else replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": ready,
        },
    }


RENDERED = statuses.Rendered(
    "abc", (statuses.AppliedPolicy(name="cost-guard", generation=3),), desired_replicas=2
)


def _after_reconcile(
    deployment: dict[str, Any] | None,
    previous: statuses.AgentDeploymentStatus | None = None,
    outcome: statuses.Rendered | statuses.Problem = RENDERED,
    now: datetime = T0,
) -> statuses.AgentDeploymentStatus:
    return statuses.agent_status(
        previous or statuses.AgentDeploymentStatus(),
        generation=7,
        outcome=outcome,
        deployment=deployment,
        selector="a=b",
        now=now,
    )


def test_a_finished_rollout_is_ready() -> None:
    status = _after_reconcile(_deployment(want=2, ready=2, updated=2))

    ready = conditions.find(status.conditions, "Ready")
    assert ready is not None
    assert ready.status == "True"
    assert ready.reason == "Available"
    assert "2 of 2 replicas ready with config abc" in ready.message
    assert not conditions.is_true(status.conditions, "Reconciling")
    assert not conditions.is_true(status.conditions, "Stalled")
    assert (status.replicas, status.ready_replicas, status.updated_replicas) == (2, 2, 2)
    assert status.observed_generation == 7
    assert status.config_hash == "abc"
    assert status.applied_policies == RENDERED.applied_policies
    assert status.desired_replicas == 2
    assert status.selector == "a=b"
    assert all(c.observed_generation == 7 for c in status.conditions)


def test_a_rollout_in_progress_is_reconciling_not_ready() -> None:
    cases = [
        _deployment(want=2, ready=1, updated=1),  # pods still starting
        _deployment(want=2, ready=2, updated=2, replicas=3),  # an old pod still running
        _deployment(want=2, ready=2, updated=2, config_hash="old"),  # the old config
        _deployment(want=2, ready=2, updated=2, observed=1),  # the controller has not looked
        None,  # the Deployment is not visible yet
    ]
    for deployment in cases:
        status = _after_reconcile(deployment)

        ready = conditions.find(status.conditions, "Ready")
        assert ready is not None
        assert ready.status == "False", deployment
        assert ready.reason == "RolloutInProgress"
        assert conditions.is_true(status.conditions, "Reconciling")


def test_zero_replicas_is_ready_as_specified() -> None:
    status = _after_reconcile(
        _deployment(want=0, ready=0, updated=0),
        outcome=dataclasses.replace(RENDERED, desired_replicas=0),
    )

    ready = conditions.find(status.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("True", "ScaledToZero")


def test_a_deployment_scaled_by_someone_else_is_not_ready() -> None:
    ready = _after_reconcile(_deployment(want=2, ready=2, updated=2))

    scaled = statuses.rollout_status(
        ready, deployment=_deployment(want=7, ready=7, updated=7), generation=None, now=T1
    )

    assert not conditions.is_true(scaled.conditions, "Ready")
    reconciling = conditions.find(scaled.conditions, "Reconciling")
    assert reconciling is not None
    assert reconciling.status == "True"
    assert "asks for 7 replicas, the agent for 2" in reconciling.message


def test_a_problem_stalls_the_agent_and_keeps_what_runs() -> None:
    running = _after_reconcile(_deployment(want=2, ready=2, updated=2))
    problem = statuses.Problem("PolicyNotFound", "spec.policyRefs: AgentPolicy x not found")

    stalled = _after_reconcile(
        _deployment(want=2, ready=2, updated=2), previous=running, outcome=problem, now=T1
    )

    assert conditions.is_true(stalled.conditions, "Stalled")
    ready = conditions.find(stalled.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "PolicyNotFound")
    assert ready.message == problem.message
    assert stalled.config_hash == "abc"  # the pods keep their last config
    assert stalled.applied_policies == running.applied_policies
    assert stalled.observed_generation == 7


def test_recovering_from_a_problem_clears_stalled() -> None:
    problem = statuses.Problem("InvalidSpec", "spec.agent.tools[0].parameters: bad")
    stalled = _after_reconcile(None, outcome=problem)

    fixed = _after_reconcile(_deployment(want=2, ready=2, updated=2), previous=stalled, now=T1)

    assert not conditions.is_true(fixed.conditions, "Stalled")
    assert conditions.is_true(fixed.conditions, "Ready")
    stalled_cond = conditions.find(fixed.conditions, "Stalled")
    assert stalled_cond is not None
    assert stalled_cond.last_transition_time == "2026-01-01T12:05:00Z"


def test_rollout_refresh_follows_the_deployment_without_a_new_generation() -> None:
    rolling = _after_reconcile(_deployment(want=2, ready=0, updated=0))

    done = statuses.rollout_status(
        rolling, deployment=_deployment(want=2, ready=2, updated=2), generation=None, now=T1
    )

    assert conditions.is_true(done.conditions, "Ready")
    assert done.observed_generation == 7
    assert done.ready_replicas == 2


def test_a_late_event_of_an_unobserved_deployment_does_not_undo_ready() -> None:
    ready = _after_reconcile(
        _deployment(want=1, ready=1, updated=1),
        outcome=dataclasses.replace(RENDERED, desired_replicas=1),
    )
    created: dict[str, Any] = {  # the Deployment's creation event, before the controller looked
        "metadata": {"generation": 2},
        "spec": _deployment(want=1, ready=0, updated=0)["spec"],
    }
    lagging = _deployment(want=1, ready=0, updated=0, observed=1)

    for late in (created, lagging):
        refreshed = statuses.rollout_status(ready, deployment=late, generation=None, now=T1)

        assert refreshed == ready
        assert conditions.is_true(refreshed.conditions, "Ready")


def test_rollout_refresh_leaves_a_stalled_agent_stalled() -> None:
    stalled = _after_reconcile(None, outcome=statuses.Problem("InvalidSpec", "bad"))

    refreshed = statuses.rollout_status(
        stalled, deployment=_deployment(want=1, ready=1, updated=1), generation=None, now=T1
    )

    assert conditions.is_true(refreshed.conditions, "Stalled")
    assert refreshed.ready_replicas == 1


# ------------------------------------------------------------------------- scaling status


def _decision(replicas: int, current: int, backlog_known: bool = True) -> autoscaling.Decision:
    return autoscaling.Decision(
        replicas,
        current,
        replicas if backlog_known else None,
        "ScaledUp" if replicas > current else "Steady",
        "why",
        (),
    )


def test_scaling_status_records_the_decision() -> None:
    base = _after_reconcile(_deployment(want=2, ready=2, updated=2))

    scaled = statuses.scaling_status(
        base, decision=_decision(5, 2), backlog=47, problem=None, now=T1
    )
    steady = statuses.scaling_status(
        scaled, decision=_decision(5, 5), backlog=44, problem=None, now=T1 + timedelta(seconds=5)
    )

    assert (scaled.desired_replicas, scaled.queue_depth) == (5, 47)
    assert scaled.last_scale_time == "2026-01-01T12:05:00Z"
    assert steady.last_scale_time == scaled.last_scale_time  # no change, no new time
    assert steady.queue_depth == 44
    active = conditions.find(steady.conditions, "ScalingActive")
    assert active is not None
    assert (active.status, active.reason) == ("True", "BacklogRead")


def test_an_unknown_backlog_says_why_and_keeps_the_last_depth() -> None:
    base = statuses.scaling_status(
        _after_reconcile(None), decision=_decision(3, 3), backlog=25, problem=None, now=T0
    )

    held = statuses.scaling_status(
        base,
        decision=_decision(3, 3, backlog_known=False),
        backlog=None,
        problem="Redis down",
        now=T1,
    )

    active = conditions.find(held.conditions, "ScalingActive")
    assert active is not None
    assert (active.status, active.reason) == ("False", "BacklogUnavailable")
    assert active.message.startswith("Redis down")
    assert held.queue_depth == 25
    assert held.desired_replicas == 3


def test_scaling_off_removes_the_autoscaler_fields() -> None:
    base = statuses.scaling_status(
        _after_reconcile(None), decision=_decision(3, 3), backlog=25, problem=None, now=T0
    )

    off = statuses.scaling_status(base, decision=None, backlog=None, problem=None, now=T1)

    assert off.queue_depth is None
    assert conditions.find(off.conditions, "ScalingActive") is None


# -------------------------------------------------------------------------- policy status


def test_policy_status_lists_its_agents_sorted_and_unique() -> None:
    status = statuses.policy_status(
        statuses.AgentPolicyStatus(), generation=4, agents=["b", "a", "b"], problem=None, now=T0
    )

    assert status.agents == ("a", "b")
    assert status.agent_count == 2
    assert status.observed_generation == 4
    ready = conditions.find(status.conditions, "Ready")
    assert ready is not None
    assert ready.reason == "Accepted"
    assert "a, b" in ready.message


def test_an_invalid_policy_is_stalled() -> None:
    status = statuses.policy_status(
        statuses.AgentPolicyStatus(),
        generation=1,
        agents=[],
        problem=statuses.Problem("InvalidSpec", "spec.x: bad"),
        now=T0,
    )

    assert conditions.is_true(status.conditions, "Stalled")
    assert not conditions.is_true(status.conditions, "Ready")
    assert not conditions.is_true(status.conditions, "Reconciling")


# ------------------------------------------------------------------------- acknowledgement


def test_a_new_agent_is_acknowledged_as_reconciling_and_not_ready() -> None:
    status = statuses.acknowledged(
        statuses.AgentDeploymentStatus(observed_generation=0), generation=1, now=T0
    )

    assert status.observed_generation == 1
    reconciling = conditions.find(status.conditions, "Reconciling")
    ready = conditions.find(status.conditions, "Ready")
    assert reconciling is not None
    assert ready is not None
    assert (reconciling.status, reconciling.reason) == ("True", "ReconcileStarted")
    assert (ready.status, ready.reason) == ("False", "ReconcileStarted")
    assert reconciling.observed_generation == 1
    assert "generation 1" in reconciling.message


def test_a_new_generation_is_reconciling_and_keeps_what_runs_ready() -> None:
    done = _after_reconcile(_deployment(want=2, ready=2, updated=2))

    status = statuses.acknowledged(done, generation=8, now=T1)

    assert status.observed_generation == 8
    assert conditions.is_true(status.conditions, "Reconciling")
    ready = conditions.find(status.conditions, "Ready")
    assert ready == conditions.find(done.conditions, "Ready")
    assert status.config_hash == done.config_hash


def test_an_observed_generation_is_not_acknowledged_again() -> None:
    done = _after_reconcile(_deployment(want=2, ready=2, updated=2))

    assert statuses.acknowledged(done, generation=7, now=T1) is done


def test_a_policy_is_acknowledged_then_reconciled() -> None:
    seen = statuses.acknowledged(statuses.AgentPolicyStatus(), generation=3, now=T0)
    done = statuses.policy_status(seen, generation=3, agents=["a"], problem=None, now=T1)

    assert seen.observed_generation == 3
    assert conditions.is_true(seen.conditions, "Reconciling")
    assert not conditions.is_true(done.conditions, "Reconciling")
    assert conditions.is_true(done.conditions, "Ready")


# ---------------------------------------------------------------------------- merge patch


def test_merge_patch_carries_only_the_differences() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "gone": True, "list": [1, 2]}
    new = {"a": 1, "b": {"c": 2, "d": 4}, "list": [1, 2, 3], "added": "x"}

    assert statuses.merge_patch(old, new) == {
        "gone": None,
        "b": {"d": 4},
        "list": [1, 2, 3],
        "added": "x",
    }
    assert statuses.merge_patch(new, new) == {}


def test_an_unchanged_status_needs_no_patch() -> None:
    status = _after_reconcile(_deployment(want=2, ready=2, updated=2))
    again = _after_reconcile(_deployment(want=2, ready=2, updated=2), previous=status, now=T1)

    assert statuses.merge_patch(status.document(), again.document()) == {}


# ---------------------------------------------------------------------------- API errors


def test_api_errors_become_conditions_with_the_reason() -> None:
    from pilothouse.operator import errors, reconciling

    done = _after_reconcile(_deployment(want=2, ready=2, updated=2))
    forbidden = reconciling.api_problem(
        errors.KubeRejected(403, 'PATCH /x: serviceaccounts "a" is forbidden')
    )
    down = reconciling.api_problem(errors.KubeUnavailable("GET /x: connection refused"))
    invalid = reconciling.api_problem(errors.KubeRejected(422, "PATCH /x: invalid"))

    stalled = _after_reconcile(None, previous=done, outcome=forbidden, now=T1)
    retrying = _after_reconcile(None, previous=done, outcome=down, now=T1)

    assert (forbidden.reason, forbidden.transient) == ("ApiForbidden", False)
    assert "serviceaccounts" in forbidden.message
    assert (invalid.reason, invalid.transient) == ("ApiRejected", False)
    assert (down.reason, down.transient) == ("ApiUnavailable", True)
    assert conditions.is_true(stalled.conditions, "Stalled")
    assert not conditions.is_true(stalled.conditions, "Ready")
    reconciling_cond = conditions.find(retrying.conditions, "Reconciling")
    assert reconciling_cond is not None
    assert (reconciling_cond.status, reconciling_cond.reason) == ("True", "ApiUnavailable")
    assert conditions.find(retrying.conditions, "Ready") == conditions.find(
        done.conditions, "Ready"
    )


def test_the_status_says_how_callers_are_authenticated() -> None:
    for mode in ("kubernetes", "tokens", "none"):
        outcome = dataclasses.replace(RENDERED, authentication=mode)
        status = _after_reconcile(_deployment(want=2, ready=2, updated=2), outcome=outcome)
        assert status.authentication == mode
        assert status.model_dump(by_alias=True, exclude_none=True)["authentication"] == mode
