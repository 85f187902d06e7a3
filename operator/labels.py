"""Names the operator gives things: labels, annotations, child object names, the field manager.

One place, so the builders (:mod:`pilothouse.operator.manifests`), the pruning selector
(:mod:`pilothouse.operator.reconciling`) and the status (the scale subresource's selector) can
never disagree about which objects belong to which agent.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONFIG_HASH_ANNOTATION",
    "FIELD_MANAGER",
    "child_name",
    "common_labels",
    "configmap_name",
    "managed_selector",
    "selector_labels",
    "selector_string",
]

FIELD_MANAGER: Final = "pilothouse-operator"
"""The one server-side-apply field manager of everything the operator writes."""

NAME_KEY: Final = "app.kubernetes.io/name"
INSTANCE_KEY: Final = "app.kubernetes.io/instance"
COMPONENT_KEY: Final = "app.kubernetes.io/component"
PART_OF_KEY: Final = "app.kubernetes.io/part-of"
MANAGED_BY_KEY: Final = "app.kubernetes.io/managed-by"
AGENT_KEY: Final = "pilothouse.dev/agent"
AGENT_NAMESPACE_KEY: Final = "pilothouse.dev/agent-namespace"
"""On cluster-scoped objects made for an agent (its review ClusterRoleBinding)."""
"""Label naming the AgentDeployment an object belongs to."""

APP_NAME: Final = "pilothouse-agent"
COMPONENT: Final = "runtime"
PART_OF: Final = "pilothouse"

CONFIG_HASH_ANNOTATION: Final = "pilothouse.dev/config-hash"
"""Pod-template annotation: hash of the rendered runtime config (a change rolls the pods)."""
CONFIG_FILE: Final = "runtime.yaml"
"""Key of the runtime config in the agent's ConfigMap, and its file name in the pod."""


def selector_labels(agent: str) -> dict[str, str]:
    """The labels that select an agent's pods (immutable once a Deployment exists)."""
    return {NAME_KEY: APP_NAME, AGENT_KEY: agent}


def common_labels(agent: str) -> dict[str, str]:
    """The labels of every object the operator creates for an agent."""
    return {
        NAME_KEY: APP_NAME,
        INSTANCE_KEY: agent,
        COMPONENT_KEY: COMPONENT,
        PART_OF_KEY: PART_OF,
        MANAGED_BY_KEY: FIELD_MANAGER,
        AGENT_KEY: agent,
    }


def selector_string(agent: str) -> str:
    """:func:`selector_labels` as a label-selector string (``status.selector``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(agent).items()))


def managed_selector(agent: str | None = None) -> str:
    """Selects the objects the operator manages (for one agent, or for all)."""
    base = f"{MANAGED_BY_KEY}={FIELD_MANAGER}"
    return base if agent is None else f"{base},{AGENT_KEY}={agent}"


def child_name(agent: str) -> str:
    """Name of the agent's Deployment, Service, ServiceAccount and PodDisruptionBudget."""
    return agent


def configmap_name(agent: str) -> str:
    """Name of the ConfigMap holding the agent's runtime config."""
    return f"{agent}-runtime"
