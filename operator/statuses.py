"""The resources' ``status``: its models, and the pure computation of the next one.

The reconciler (:mod:`pilothouse.operator.reconciling`) gathers what it saw (the applied
Deployment, the render outcome, the autoscaler's decision), calls the functions here with the
clock, and patches ``status`` only when :func:`merge_patch` finds a difference. The models are
also the source of the CRDs' status schemas (:mod:`pilothouse.operator.crdgen`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from pilothouse.operator import autoscaling, conditions, labels

__all__ = [
    "AgentDeploymentStatus",
    "AgentPolicyStatus",
    "AppliedPolicy",
    "Problem",
    "Rendered",
    "acknowledged",
    "agent_status",
    "merge_patch",
    "policy_status",
    "rollout_status",
    "scaling_status",
]

_Condition = conditions.Condition  # the status field `conditions` shadows the module in classes
_LIST_MAP_BY_TYPE: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class _Status(BaseModel):
    """Lenient on read (older operators may have written other fields), camelCase."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    def document(self) -> dict[str, Any]:
        """The status as the API stores it (camelCase, unset fields absent)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class AppliedPolicy(_Status):
    """An AgentPolicy rendered into the agent's runtime config."""

    name: str
    """Name of the AgentPolicy."""
    generation: int
    """Its ``metadata.generation`` when rendered: compare with the policy's to see whether the
    pods run its latest version."""


class AgentDeploymentStatus(_Status):
    """What the operator observed and did; conditions are kstatus-compatible."""

    observed_generation: int | None = None
    """The ``metadata.generation`` the operator has seen: written with ``Reconciling=True`` as
    its first act on a new generation; 0 (the schema's default) until the operator acts."""
    replicas: int | None = None
    """Pods of the agent (``kubectl scale`` and the HPA read this)."""
    ready_replicas: int | None = None
    """Pods ready to serve."""
    updated_replicas: int | None = None
    """Pods running the current config."""
    desired_replicas: int | None = None
    """Replicas the operator asked for (the autoscaler's decision with ``spec.scaling``)."""
    queue_depth: int | None = None
    """Backlog of the agent's queue at the last autoscaler decision (queued plus in flight)."""
    last_scale_time: str | None = None
    """When the autoscaler last changed the replica count."""
    selector: str | None = None
    """Label selector of the agent's pods (for the scale subresource)."""
    config_hash: str | None = None
    """Hash of the rendered runtime config; the pods carry it as ``pilothouse.dev/config-hash``."""
    applied_policies: tuple[AppliedPolicy, ...] = ()
    """AgentPolicies rendered into the running config, in evaluation order."""
    authentication: str | None = None
    """How the agent's API authenticates callers: ``kubernetes``, ``tokens``, or ``none``
    (anyone who reaches the API may send requests and approve escalations)."""
    conditions: tuple[_Condition, ...] = Field(default=(), json_schema_extra=_LIST_MAP_BY_TYPE)
    """Ready, Reconciling, Stalled and (with ``spec.scaling``) ScalingActive."""


class AgentPolicyStatus(_Status):
    """Where the policy is in force."""

    observed_generation: int | None = None
    """The ``metadata.generation`` the operator has seen; 0 (the schema's default) until the
    operator acts."""
    agents: tuple[str, ...] = ()
    """AgentDeployments this policy applies to (by ``policyRefs`` or ``targetSelector``)."""
    agent_count: int = 0
    """How many agents this policy applies to."""
    conditions: tuple[_Condition, ...] = Field(default=(), json_schema_extra=_LIST_MAP_BY_TYPE)
    """Ready, Reconciling and Stalled."""


# ----------------------------------------------------------------------- what reconcile saw


@dataclass(frozen=True, slots=True)
class Rendered:
    """The children were applied with this config."""

    config_hash: str
    applied_policies: tuple[AppliedPolicy, ...]
    desired_replicas: int
    authentication: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the agent (policy) cannot be rendered: a reason constant and a message.

    ``transient`` problems (the API server unreachable for now) make the agent Reconciling,
    not Stalled: the operator retries without anyone changing anything.
    """

    reason: str
    message: str
    transient: bool = False


# ------------------------------------------------------------------------------ computation


def _int(obj: Mapping[str, Any] | None, *path: str) -> int:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return 0
        node = node.get(key)
    return node if isinstance(node, int) else 0


def _observed_counts(
    status: AgentDeploymentStatus, deployment: Mapping[str, Any] | None
) -> AgentDeploymentStatus:
    return status.model_copy(
        update={
            "replicas": _int(deployment, "status", "replicas"),
            "ready_replicas": _int(deployment, "status", "readyReplicas"),
            "updated_replicas": _int(deployment, "status", "updatedReplicas"),
        }
    )


def rollout_status(
    previous: AgentDeploymentStatus,
    *,
    deployment: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime,
) -> AgentDeploymentStatus:
    """Replica counts and Ready/Reconciling from the Deployment, for the config in ``previous``.

    Called after a full reconcile (with the new ``config_hash`` already in ``previous``) and on
    every change of the Deployment (``generation`` None keeps the observed generation). A
    Stalled agent keeps its conditions: only the counts move.

    A Deployment whose controller has not observed its generation yet (``status`` absent or
    ``observedGeneration`` behind ``metadata.generation``) says nothing about the rollout: its
    counts belong to an older spec, or to none. On a Deployment event (``generation`` None)
    ``previous`` is kept as it is, so an event body delivered late (e.g. the one of the
    Deployment's creation, handled after a reconcile saw the pods ready) does not turn Ready
    back to False; the controller's next status update brings the next event.
    """
    if generation is None and deployment is not None and _unobserved(deployment):
        return previous
    status = _observed_counts(previous, deployment)
    if conditions.is_true(status.conditions, conditions.STALLED):
        return status
    observed = previous.observed_generation if generation is None else generation
    return _rolled_out(status, deployment, observed, now)


def _unobserved(deployment: Mapping[str, Any]) -> bool:
    """The Deployment controller has not reported on the Deployment's current generation."""
    return _int(deployment, "status", "observedGeneration") < _int(
        deployment, "metadata", "generation"
    )


def _rolled_out(
    status: AgentDeploymentStatus,
    deployment: Mapping[str, Any] | None,
    observed: int | None,
    now: datetime,
) -> AgentDeploymentStatus:
    conds = status.conditions
    has = _int(deployment, "spec", "replicas")
    # What the spec asks for (spec.replicas, or the autoscaler's decision), not what the
    # Deployment says: a Deployment scaled by someone else is not Ready, it is being put back.
    want = has if status.desired_replicas is None else status.desired_replicas
    template_hash = _annotation(deployment)
    done = (
        deployment is not None
        and not _unobserved(deployment)
        and has == want
        and template_hash == status.config_hash
        and (status.updated_replicas or 0) >= want
        and (status.replicas or 0) == want
        and _int(deployment, "status", "availableReplicas") >= want
    )
    if done:
        reason = conditions.SCALED_TO_ZERO if want == 0 else conditions.AVAILABLE
        message = (
            "the agent runs no replicas (replicas: 0)"
            if want == 0
            else f"{status.ready_replicas} of {want} replicas ready with config {template_hash}"
        )
        conds = _set(conds, conditions.READY, "True", reason, message, observed, now)
        conds = _set(
            conds, conditions.RECONCILING, "False", conditions.RECONCILED, "", observed, now
        )
    else:
        if deployment is None:
            message = "waiting for the Deployment"
        elif has != want:
            message = (
                f"the Deployment asks for {has} replicas, the agent for {want}: putting it back"
            )
        elif template_hash != status.config_hash or (status.replicas or 0) > want:
            message = (
                f"rolling out config {status.config_hash}: {status.updated_replicas} of {want} "
                f"replicas updated, {status.ready_replicas} ready"
            )
        else:
            message = f"waiting for replicas: {status.ready_replicas} of {want} ready"
        reason = conditions.ROLLOUT_IN_PROGRESS
        conds = _set(conds, conditions.READY, "False", reason, message, observed, now)
        conds = _set(conds, conditions.RECONCILING, "True", reason, message, observed, now)
    conds = _set(conds, conditions.STALLED, "False", conditions.RECONCILED, "", observed, now)
    return status.model_copy(update={"conditions": conds, "observed_generation": observed})


def agent_status(
    previous: AgentDeploymentStatus,
    *,
    generation: int,
    outcome: Rendered | Problem,
    deployment: Mapping[str, Any] | None,
    selector: str,
    now: datetime,
) -> AgentDeploymentStatus:
    """The status after a full reconcile of generation ``generation``."""
    base = previous.model_copy(update={"selector": selector, "observed_generation": generation})
    if isinstance(outcome, Problem) and outcome.transient:
        conds = _set(
            base.conditions,
            conditions.RECONCILING,
            "True",
            outcome.reason,
            outcome.message,
            generation,
            now,
        )
        return base.model_copy(update={"conditions": conds})
    if isinstance(outcome, Problem):
        conds = base.conditions
        msg = outcome.message
        conds = _set(conds, conditions.STALLED, "True", outcome.reason, msg, generation, now)
        conds = _set(conds, conditions.READY, "False", outcome.reason, msg, generation, now)
        conds = _set(conds, conditions.RECONCILING, "False", outcome.reason, msg, generation, now)
        return _observed_counts(base, deployment).model_copy(update={"conditions": conds})
    base = base.model_copy(
        update={
            "config_hash": outcome.config_hash,
            "applied_policies": outcome.applied_policies,
            "desired_replicas": outcome.desired_replicas,
            "authentication": outcome.authentication,
        }
    )
    return _rolled_out(_observed_counts(base, deployment), deployment, generation, now)


_S = TypeVar("_S", AgentDeploymentStatus, AgentPolicyStatus)


def acknowledged(previous: _S, *, generation: int, now: datetime) -> _S:
    """The status of a generation the operator has just seen and not yet reconciled.

    The operator's first act on a new (or changed) resource, before it builds anything:
    ``observedGeneration`` and ``Reconciling=True``, so kstatus, Flux and Argo CD read "in
    progress" from the first moment, and keep reading it if the reconcile then fails. A new
    resource also gets ``Ready=False``; one that already had a Ready condition keeps it (it
    describes what still runs) until the reconcile decides. ``previous`` is returned unchanged
    when this generation was already seen.
    """
    if previous.observed_generation == generation:
        return previous
    message = f"the operator is reconciling generation {generation}"
    conds = _set(
        previous.conditions,
        conditions.RECONCILING,
        "True",
        conditions.RECONCILE_STARTED,
        message,
        generation,
        now,
    )
    if conditions.find(conds, conditions.READY) is None:
        reason = conditions.RECONCILE_STARTED
        conds = _set(conds, conditions.READY, "False", reason, message, generation, now)
    return previous.model_copy(update={"observed_generation": generation, "conditions": conds})


def scaling_status(
    previous: AgentDeploymentStatus,
    *,
    decision: autoscaling.Decision | None,
    backlog: int | None,
    problem: str | None,
    now: datetime,
) -> AgentDeploymentStatus:
    """The autoscaler's part: desiredReplicas, queueDepth, lastScaleTime, ScalingActive.

    ``decision`` None means scaling is off: the autoscaler's fields and condition go away.
    ``problem`` explains an unknown backlog.
    """
    if decision is None:
        return previous.model_copy(
            update={
                "queue_depth": None,
                "conditions": conditions.remove_condition(
                    previous.conditions, conditions.SCALING_ACTIVE
                ),
            }
        )
    gen = previous.observed_generation
    if backlog is None:
        message = f"{problem or 'backlog unavailable'}; {decision.message}"
        conds = _set(
            previous.conditions,
            conditions.SCALING_ACTIVE,
            "False",
            conditions.BACKLOG_UNAVAILABLE,
            message,
            gen,
            now,
        )
    else:
        conds = _set(
            previous.conditions,
            conditions.SCALING_ACTIVE,
            "True",
            conditions.BACKLOG_READ,
            decision.message,
            gen,
            now,
        )
    update: dict[str, Any] = {
        "conditions": conds,
        "desired_replicas": decision.replicas,
        "queue_depth": backlog if backlog is not None else previous.queue_depth,
    }
    if decision.changed:
        update["last_scale_time"] = conditions.timestamp(now)
    return previous.model_copy(update=update)


def policy_status(
    previous: AgentPolicyStatus,
    *,
    generation: int,
    agents: Sequence[str],
    problem: Problem | None,
    now: datetime,
) -> AgentPolicyStatus:
    """The policy's status: where it applies, and whether it renders."""
    names = tuple(sorted(set(agents)))
    conds = previous.conditions
    if problem is not None:
        conds = _set(
            conds, conditions.READY, "False", problem.reason, problem.message, generation, now
        )
        conds = _set(
            conds, conditions.STALLED, "True", problem.reason, problem.message, generation, now
        )
        conds = _set(
            conds, conditions.RECONCILING, "False", problem.reason, problem.message, generation, now
        )
    else:
        where = ", ".join(names) if names else "no agent yet"
        message = f"applies to {len(names)} agent(s): {where}"
        conds = _set(conds, conditions.READY, "True", conditions.ACCEPTED, message, generation, now)
        conds = _set(conds, conditions.STALLED, "False", conditions.ACCEPTED, "", generation, now)
        conds = _set(
            conds, conditions.RECONCILING, "False", conditions.ACCEPTED, "", generation, now
        )
    return AgentPolicyStatus(
        observed_generation=generation, agents=names, agent_count=len(names), conditions=conds
    )


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``; empty if equal."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    return patch


# ----------------------------------------------------------------------------------- helpers


def _annotation(deployment: Mapping[str, Any] | None) -> str | None:
    node: Any = deployment or {}
    for key in ("spec", "template", "metadata", "annotations"):
        node = node.get(key) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        return None
    value = node.get(labels.CONFIG_HASH_ANNOTATION)
    return value if isinstance(value, str) else None


def _set(
    conds: Sequence[conditions.Condition],
    type_: str,
    status: conditions.Status,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> tuple[conditions.Condition, ...]:
    return conditions.set_condition(
        conds,
        type_=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        now=now,
    )
