"""Status conditions: the one pure writer, and the documented condition types and reasons.

Conditions follow ``metav1.Condition`` and kstatus, so ``kubectl wait --for=condition=Ready``,
Argo CD and Flux read an agent's health without knowing Pilothouse: ``Ready`` says the agent
serves with its current spec, ``Reconciling`` (abnormal-true) that the operator is still
rolling it out, ``Stalled`` (abnormal-true) that it cannot make progress without a change from
the user. :mod:`pilothouse.operator.statuses` computes them; :func:`set_condition` is the only
way they change, so ``lastTransitionTime`` moves only when a condition's status flips.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "Condition",
    "find",
    "is_true",
    "remove_condition",
    "set_condition",
    "timestamp",
]

# ----------------------------------------------------------------------------- condition types

READY: Final = "Ready"
"""The agent (policy) is in force as specified: every replica runs the current config."""
RECONCILING: Final = "Reconciling"
"""True while the operator works towards the spec (a rollout in progress)."""
STALLED: Final = "Stalled"
"""True when the operator cannot make progress until the user changes something."""
SCALING_ACTIVE: Final = "ScalingActive"
"""With ``spec.scaling``: whether the autoscaler can read the backlog and decide."""

ORDER: Final = (READY, RECONCILING, STALLED, SCALING_ACTIVE)
"""Where each type sits in ``status.conditions`` (unknown types go last)."""

# ---------------------------------------------------------------------------------- reasons

AVAILABLE: Final = "Available"
"""Ready=True: every desired replica is updated and ready."""
SCALED_TO_ZERO: Final = "ScaledToZero"
"""Ready=True: the agent runs no replicas, as specified (``replicas: 0``)."""
ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"
"""Ready=False / Reconciling=True: pods are being replaced or started."""
RECONCILE_STARTED: Final = "ReconcileStarted"
"""Reconciling=True (Ready=False on a new resource): the operator has seen this generation and
works on it; written before anything else, so no pipeline reads an untouched resource as healthy."""
RECONCILED: Final = "Reconciled"
"""Reconciling=False / Stalled=False: nothing left to do."""
ACCEPTED: Final = "Accepted"
"""AgentPolicy Ready=True: the policy validates and is rendered into its agents."""
POLICY_NOT_FOUND: Final = "PolicyNotFound"
"""Stalled=True: a ``policyRefs`` entry names no AgentPolicy; rollouts wait for it (the pods
keep their last config, so no policy is silently dropped)."""
SECRET_NOT_FOUND: Final = "SecretNotFound"
"""Stalled=True: a Secret (or key) the pods reference does not exist; rollouts wait for it and
the operator checks again every few seconds."""
SYSTEM_PROMPT_NOT_FOUND: Final = "SystemPromptNotFound"
"""Stalled=True: ``systemPromptFrom`` names a missing ConfigMap or key."""
INVALID_SPEC: Final = "InvalidSpec"
"""Stalled=True: the spec passed the schema but cannot be rendered (the message says where)."""
APPLY_REJECTED: Final = "ApplyRejected"
"""Stalled=True: the API server refused a child object the operator built."""
CRD_OUTDATED: Final = "CRDOutdated"
"""Stalled=True: the cluster serves an older AgentDeployment or AgentPolicy CRD than the operator
needs (fields would be pruned); nothing is applied until the CRDs are upgraded."""
API_FORBIDDEN: Final = "ApiForbidden"
"""Stalled=True: the API server refused the operator a request (401/403: its RBAC lacks a rule);
retried every minute, so granting the permission recovers the agent."""
API_UNAVAILABLE: Final = "ApiUnavailable"
"""Reconciling=True: a request to the API server failed for now (unreachable, timeout, 409, 429,
5xx); retried with a backoff."""
API_REJECTED: Final = "ApiRejected"
"""Stalled=True: the API server refused a request of the reconcile for good (another 4xx)."""
BACKLOG_READ: Final = "BacklogRead"
"""ScalingActive=True: the backlog was read and the autoscaler decided."""
BACKLOG_UNAVAILABLE: Final = "BacklogUnavailable"
"""ScalingActive=False: the backlog cannot be read; replicas are held where they are."""

PROBLEMS: Final = (
    POLICY_NOT_FOUND,
    SECRET_NOT_FOUND,
    SYSTEM_PROMPT_NOT_FOUND,
    INVALID_SPEC,
    APPLY_REJECTED,
    API_FORBIDDEN,
    API_REJECTED,
    CRD_OUTDATED,
)
"""Reasons that make an agent Stalled."""

Status = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """One observation of a resource's state, as ``metav1.Condition``."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    type: str = Field(min_length=1, max_length=316)
    """Condition type: Ready, Reconciling, Stalled or ScalingActive."""
    status: Status
    """True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024)
    """Machine-readable CamelCase reason of the last transition."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details."""
    last_transition_time: str
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` this condition was computed from."""


def timestamp(now: datetime) -> str:
    """``now`` as Kubernetes writes times: RFC 3339, UTC, whole seconds."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of this type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    """Whether the condition of this type is present and True."""
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime,
) -> tuple[Condition, ...]:
    """The conditions with this one set; ``lastTransitionTime`` changes only with the status.

    Pure: ``conditions`` is not modified, ``now`` is the only clock. The result is ordered
    by :data:`ORDER`, so an unchanged state always serialises the same way.
    """
    previous = find(conditions, type_)
    if previous is None or previous.status != status:
        since = timestamp(now)
    else:
        since = previous.last_transition_time
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=observed_generation,
    )
    kept = [c for c in conditions if c.type != type_]
    return _ordered((*kept, new))


def remove_condition(conditions: Sequence[Condition], type_: str) -> tuple[Condition, ...]:
    """The conditions without the one of this type."""
    return tuple(c for c in conditions if c.type != type_)


def _ordered(conditions: Sequence[Condition]) -> tuple[Condition, ...]:
    def rank(c: Condition) -> tuple[int, str]:
        return (ORDER.index(c.type) if c.type in ORDER else len(ORDER), c.type)

    return tuple(sorted(conditions, key=rank))
