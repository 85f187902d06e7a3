"""Which AgentPolicies apply to which AgentDeployments: pure matching, no I/O.

A policy applies to an agent that names it in ``spec.policyRefs`` and to every agent of its
namespace whose labels its ``spec.targetSelector`` matches. The reconciler uses
:func:`select_policies` when it renders an agent (referenced policies first, in the agent's
order, then selector matches by name) and :func:`agents_of` to fan a policy change out and to
write the policy's status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.operator import resources, selectors

__all__ = ["Selection", "Target", "agents_of", "applies_to", "select_policies"]


@dataclass(frozen=True, slots=True)
class Target:
    """What targeting needs of an AgentDeployment: its name, labels and policy references.

    Built from a raw body without validating the rest of the spec, so a policy's status can
    list agents cheaply (and even agents whose spec is being fixed).
    """

    name: str
    namespace: str
    labels: Mapping[str, str]
    policy_refs: tuple[str, ...]

    @classmethod
    def from_agent(cls, agent: resources.Agent) -> Target:
        refs = tuple(r.name for r in agent.spec.policy_refs)
        return cls(agent.meta.name, agent.meta.namespace, agent.meta.labels, refs)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Target:
        meta = resources.Meta.from_body(body)
        refs = (body.get("spec") or {}).get("policyRefs") or []
        names = tuple(str(r["name"]) for r in refs if isinstance(r, Mapping) and "name" in r)
        return cls(meta.name, meta.namespace, meta.labels, names)


def applies_to(policy: resources.Policy, target: Target) -> bool:
    """Whether the policy applies to the agent (by reference or by selector)."""
    if policy.meta.namespace != target.namespace:
        return False
    if policy.meta.name in target.policy_refs:
        return True
    selector = policy.spec.target_selector
    return selector is not None and selectors.matches(selector, target.labels)


@dataclass(frozen=True, slots=True)
class Selection:
    """The policies an agent gets, in evaluation order, and the references that found none."""

    applied: tuple[resources.Policy, ...]
    missing: tuple[str, ...]


def select_policies(agent: resources.Agent, policies: Iterable[resources.Policy]) -> Selection:
    """Referenced policies in the agent's order, then selector matches sorted by name."""
    by_name = {p.meta.name: p for p in policies if p.meta.namespace == agent.meta.namespace}
    applied: list[resources.Policy] = []
    missing: list[str] = []
    for ref in agent.spec.policy_refs:
        found = by_name.get(ref.name)
        if found is None:
            missing.append(ref.name)
        else:
            applied.append(found)
    referenced = {ref.name for ref in agent.spec.policy_refs}
    for name in sorted(by_name):
        policy = by_name[name]
        selector = policy.spec.target_selector
        if (
            name not in referenced
            and selector is not None
            and selectors.matches(selector, agent.meta.labels)
        ):
            applied.append(policy)
    return Selection(tuple(applied), tuple(missing))


def agents_of(policy: resources.Policy, targets: Iterable[Target]) -> tuple[str, ...]:
    """Names of the agents the policy applies to, sorted."""
    return tuple(sorted({t.name for t in targets if applies_to(policy, t)}))
