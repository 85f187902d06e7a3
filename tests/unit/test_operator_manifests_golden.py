"""The children built for an agent, pinned as golden YAML (PILOTHOUSE_UPDATE_GOLDEN=1 rewrites).

A diff here is a change of what every user's cluster runs: review it like one.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from operator_support import (
    DEFAULTS,
    MINIMAL_AGENT,
    agent_body,
    assert_golden,
    example_policies,
    support_agent,
    targeting_order,
)

from pilothouse.operator import errors, labels, manifests, rendering, resources


def _children(agent: resources.Agent, policies: list[resources.Policy], replicas: int) -> Any:
    rendered = rendering.render(agent, policies, system_prompt="You help.", defaults=DEFAULTS)
    return manifests.build_children(agent, rendered, replicas=replicas, defaults=DEFAULTS)


def test_customer_support_children() -> None:
    agent = support_agent()

    children = _children(agent, targeting_order(agent, example_policies()), replicas=1)

    assert [c["kind"] for c in children] == ["ServiceAccount", "ConfigMap", "Service", "Deployment"]
    assert_golden("operator_customer_support.yaml", children)


def test_fixed_replicas_with_overrides_children() -> None:
    spec = {
        **MINIMAL_AGENT,
        "replicas": 3,
        "image": "registry.example.com/pilothouse:1.2.3",
        "imagePullPolicy": "Always",
        "server": {"authTokensSecretRef": {"name": "api-tokens", "key": "tokens"}},
        "podTemplate": {
            "labels": {"team": "ops", labels.AGENT_KEY: "spoofed"},
            "annotations": {"owner": "ops@example.com"},
            "nodeSelector": {"pool": "agents"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "agents", "effect": "NoSchedule"}
            ],
            "priorityClassName": "agents",
            "serviceAccountName": "existing-sa",
            "imagePullSecrets": [{"name": "regcred"}],
            "securityContext": {"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000},
        },
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }
    agent = resources.parse_agent(agent_body(spec, name="ops-bot"))

    children = _children(agent, [], replicas=3)

    assert [c["kind"] for c in children] == [
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ]
    assert_golden("operator_fixed_replicas_with_overrides.yaml", children)


def test_builders_do_not_mutate_their_input() -> None:
    agent = support_agent()
    policies = example_policies()
    before = (copy.deepcopy(agent.spec.model_dump()), [p.spec.model_dump() for p in policies])

    first = _children(agent, targeting_order(agent, policies), replicas=2)
    first[3]["spec"]["template"]["metadata"]["labels"]["x"] = "y"  # the output is the caller's
    second = _children(agent, targeting_order(agent, policies), replicas=2)

    assert (agent.spec.model_dump(), [p.spec.model_dump() for p in policies]) == before
    assert "x" not in second[3]["spec"]["template"]["metadata"]["labels"]


def test_the_pod_disruption_budget_appears_only_from_two_replicas() -> None:
    def kinds(spec: dict[str, Any]) -> list[str]:
        agent = resources.parse_agent(agent_body(spec))
        return [c["kind"] for c in _children(agent, [], replicas=1)]

    assert "PodDisruptionBudget" not in kinds({**MINIMAL_AGENT})
    assert "PodDisruptionBudget" not in kinds({**MINIMAL_AGENT, "scaling": {"maxReplicas": 5}})
    assert "PodDisruptionBudget" in kinds({**MINIMAL_AGENT, "replicas": 2})
    assert "PodDisruptionBudget" in kinds(
        {**MINIMAL_AGENT, "scaling": {"minReplicas": 2, "maxReplicas": 5}}
    )


def test_kubernetes_authentication_lets_the_agents_account_review_callers() -> None:
    agent = support_agent()
    rendered = rendering.render(agent, [], system_prompt="You help.", defaults=DEFAULTS)
    assert rendered.config.server.authentication == "kubernetes"  # the default
    binding = manifests.build_review_binding(agent, rendered)
    assert_golden("operator_review_binding.yaml", [binding])
    pod = manifests.build_deployment(agent, rendered, replicas=1, defaults=DEFAULTS)
    assert pod["spec"]["template"]["spec"]["automountServiceAccountToken"] is True

    # Its own ServiceAccount, when the pods run as an existing one.
    spec = {**MINIMAL_AGENT, "podTemplate": {"serviceAccountName": "existing-sa"}}
    other = resources.parse_agent(agent_body(spec, name="ops-bot"))
    rendered = rendering.render(other, [], system_prompt="", defaults=DEFAULTS)
    found = manifests.build_review_binding(other, rendered)
    assert found is not None
    assert found["subjects"] == [
        {"kind": "ServiceAccount", "name": "existing-sa", "namespace": other.meta.namespace}
    ]


def test_without_kubernetes_authentication_no_binding_and_no_token() -> None:
    for server in (
        {"authentication": "none"},
        {"authTokensSecretRef": {"name": "api-tokens", "key": "tokens"}},
    ):
        agent = resources.parse_agent(agent_body({**MINIMAL_AGENT, "server": server}))
        rendered = rendering.render(agent, [], system_prompt="", defaults=DEFAULTS)
        assert manifests.build_review_binding(agent, rendered) is None
        pod = manifests.build_deployment(agent, rendered, replicas=1, defaults=DEFAULTS)
        assert pod["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


NETWORK = {
    "apiFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "chat"}}},
        {"podSelector": {"matchLabels": {"app": "chat-frontend"}}},
    ],
    "metricsFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ],
    "egress": [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}},
                    "podSelector": {"matchLabels": {"app": "redis"}},
                }
            ],
            "ports": [{"port": 6379}],
        },
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
            "ports": [{"port": 443}],
        },
    ],
}


def test_spec_network_becomes_the_agents_network_policy() -> None:
    agent = resources.parse_agent(agent_body({**MINIMAL_AGENT, "network": NETWORK}))
    children = _children(agent, [], replicas=1)
    assert [c["kind"] for c in children][-1] == "NetworkPolicy"
    assert_golden("operator_network_policy.yaml", [children[-1]])


def test_network_policy_defaults_ingress_to_the_namespace_and_leaves_egress_open() -> None:
    agent = resources.parse_agent(agent_body({**MINIMAL_AGENT, "network": {}}))
    policy = manifests.build_network_policy(agent)
    assert policy is not None
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"port": 8080, "protocol": "TCP"}]}
    ]
    assert "egress" not in policy["spec"]
    no_network = resources.parse_agent(agent_body(dict(MINIMAL_AGENT)))
    assert manifests.build_network_policy(no_network) is None


def test_a_network_peer_is_selectors_or_addresses_never_both() -> None:
    bad = {
        **MINIMAL_AGENT,
        "network": {"apiFrom": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]},
    }
    with pytest.raises(errors.SpecError, match="namespaceSelector and/or podSelector, or ipBlock"):
        resources.parse_agent(agent_body(bad))
