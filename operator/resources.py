"""Typed views of the custom resources the API server hands the operator.

The Kopf handlers and the reconciler receive raw bodies (``Mapping[str, Any]``); everything
past the edge works with these frozen views instead. Parsing validates the spec with the API
models, so a spec the schema let through but the models refuse (a rule the CRD cannot express)
becomes a :class:`~pilothouse.operator.errors.SpecError` that names the field, reported as
``Stalled`` / ``InvalidSpec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pilothouse.operator import api, conditions, errors, statuses

__all__ = [
    "Agent",
    "Meta",
    "Policy",
    "agent_status_of",
    "describe_validation_error",
    "parse_agent",
    "parse_policy",
    "policy_status_of",
]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Meta:
    """The parts of ``metadata`` the operator uses."""

    name: str
    namespace: str
    uid: str = ""
    generation: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Meta:
        meta = body.get("metadata") or {}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            labels=dict(meta.get("labels") or {}),
        )


@dataclass(frozen=True, slots=True)
class Agent:
    """An AgentDeployment: metadata, validated spec, last status."""

    meta: Meta
    spec: api.AgentDeploymentSpec
    status: statuses.AgentDeploymentStatus


@dataclass(frozen=True, slots=True)
class Policy:
    """An AgentPolicy: metadata, validated spec, last status."""

    meta: Meta
    spec: api.AgentPolicySpec
    status: statuses.AgentPolicyStatus


def describe_validation_error(e: ValidationError, prefix: str) -> str:
    """Every problem of a pydantic error, one per line, each naming its field."""
    lines = []
    for err in e.errors():
        where = ".".join([prefix, *(str(p) for p in err["loc"])])
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(msg if msg.startswith((f"{where}:", "spec.")) else f"{where}: {msg}")
    return "; ".join(dict.fromkeys(lines))


def _validate(model: type[M], data: Any, prefix: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise errors.SpecError(conditions.INVALID_SPEC, describe_validation_error(e, prefix)) from e


def _status(model: type[M], body: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(body.get("status") or {})
    except ValidationError:
        return model()  # a status we cannot read is recomputed from scratch


def parse_agent(body: Mapping[str, Any]) -> Agent:
    """An AgentDeployment body as a typed view; :class:`SpecError` names a bad field."""
    return Agent(
        meta=Meta.from_body(body),
        spec=_validate(api.AgentDeploymentSpec, body.get("spec") or {}, "spec"),
        status=_status(statuses.AgentDeploymentStatus, body),
    )


def parse_policy(body: Mapping[str, Any]) -> Policy:
    """An AgentPolicy body as a typed view; :class:`SpecError` names a bad field."""
    return Policy(
        meta=Meta.from_body(body),
        spec=_validate(api.AgentPolicySpec, body.get("spec") or {}, "spec"),
        status=_status(statuses.AgentPolicyStatus, body),
    )


def agent_status_of(body: Mapping[str, Any]) -> statuses.AgentDeploymentStatus:
    """The status of an AgentDeployment body, even when its spec does not validate."""
    return _status(statuses.AgentDeploymentStatus, body)


def policy_status_of(body: Mapping[str, Any]) -> statuses.AgentPolicyStatus:
    """The status of an AgentPolicy body, even when its spec does not validate."""
    return _status(statuses.AgentPolicyStatus, body)
