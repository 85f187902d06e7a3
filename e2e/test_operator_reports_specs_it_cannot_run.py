"""Invalid specs: the API server refuses them naming the field; what it lets through but cannot
run is reported (Stalled + an Event) by the operator, which never crashes on it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import operator_harness as h
import pytest
from cluster.launcher import Cluster


def _create(
    cluster: Cluster, namespace: str, doc: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)


MODEL = {"endpoint": "http://mock-llm.invalid/v1", "name": "m"}
REJECTED: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "replicas-and-scaling",
        {
            "agent": {"systemPrompt": "x", "model": MODEL},
            "replicas": 2,
            "scaling": {"maxReplicas": 3},
        },
        ["spec.replicas", "cannot be set together with spec.scaling"],
    ),
    (
        "min-above-max",
        {
            "agent": {"systemPrompt": "x", "model": MODEL},
            "scaling": {"minReplicas": 5, "maxReplicas": 2},
        },
        ["spec.scaling.minReplicas must be less than or equal to spec.scaling.maxReplicas"],
    ),
    (
        "two-prompts",
        {
            "agent": {
                "systemPrompt": "x",
                "model": MODEL,
                "systemPromptFrom": {"configMapKeyRef": {"name": "p", "key": "k"}},
            }
        },
        ["spec.agent", "set exactly one of systemPrompt and systemPromptFrom"],
    ),
    (
        "bad-endpoint",
        {"agent": {"systemPrompt": "x", "model": {"endpoint": "ftp://x", "name": "m"}}},
        ["spec.agent.model.endpoint"],
    ),
    (
        "backoff-order",
        {
            "agent": {"systemPrompt": "x", "model": MODEL},
            "reliability": {"retry": {"initialBackoffSeconds": 5, "maxBackoffSeconds": 1}},
        },
        ["spec.reliability.retry.maxBackoffSeconds"],
    ),
    (
        "duplicate-tools",
        {
            "agent": {
                "systemPrompt": "x",
                "model": MODEL,
                "tools": [{"name": "t", "url": "http://t/"}, {"name": "t", "url": "http://u/"}],
            }
        },
        ["spec.agent.tools[1]", "Duplicate value"],
    ),
    (
        "bad-quantity",
        {
            "agent": {"systemPrompt": "x", "model": MODEL},
            "resources": {"limits": {"memory": "lots"}},
        },
        ["spec.resources.limits.memory"],
    ),
]


@pytest.mark.parametrize(("name", "spec", "expected"), REJECTED, ids=[r[0] for r in REJECTED])
def test_the_api_server_rejects_invalid_agents_naming_the_field(
    k8s_cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], expected: list[str]
) -> None:
    result = _create(k8s_cluster, namespace, h.agent_manifest(name, spec))

    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr
    assert h.get(k8s_cluster, "agd", name, namespace) is None


def test_the_api_server_rejects_a_name_that_cannot_name_a_service(
    k8s_cluster: Cluster, namespace: str
) -> None:
    result = _create(
        k8s_cluster,
        namespace,
        h.agent_manifest("9-lives", {"agent": {"systemPrompt": "x", "model": MODEL}}),
    )

    assert result.returncode != 0
    assert "metadata.name must be a DNS label" in result.stderr


def test_the_api_server_rejects_invalid_policies_naming_the_field(
    k8s_cluster: Cluster, namespace: str
) -> None:
    spec = {
        "enforcement": "sometimes",
        "costLimit": {"maxUsdPerHour": 0},
        "targetSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]},
    }

    result = _create(k8s_cluster, namespace, h.policy_manifest("bad", spec))

    assert result.returncode != 0
    assert "spec.enforcement" in result.stderr
    assert "spec.costLimit.maxUsdPerHour" in result.stderr


def test_unknown_fields_are_named_by_strict_validation(
    k8s_cluster: Cluster, namespace: str
) -> None:
    doc = h.small_agent("typo")
    doc["spec"]["replica"] = 2

    result = _create(k8s_cluster, namespace, doc)

    assert result.returncode != 0
    assert 'unknown field "spec.replica"' in result.stderr


def _stalled(reason: str) -> Any:
    def check(agent: dict[str, Any]) -> bool:
        stalled = h.condition(agent, "Stalled")
        return stalled.get("status") == "True" and stalled.get("reason") == reason

    return check


def test_a_missing_policy_stalls_the_agent_until_it_exists(
    k8s_cluster: Cluster, namespace: str
) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent("waiting", policyRefs=[{"name": "later"}]))

    stalled = h.wait_for_agent(
        k8s_cluster,
        namespace,
        "waiting",
        _stalled("PolicyNotFound"),
        what="Stalled: PolicyNotFound",
    )
    assert (
        "spec.policyRefs: AgentPolicy later not found" in h.condition(stalled, "Stalled")["message"]
    )
    assert h.condition(stalled, "Ready")["status"] == "False"
    assert h.get(k8s_cluster, "deployment", "waiting", namespace) is None  # no pods without it
    events = h.items(
        k8s_cluster, "events", namespace, "--field-selector=involvedObject.name=waiting"
    )
    assert any(e["reason"] == "PolicyNotFound" and e["type"] == "Warning" for e in events)

    h.apply(
        k8s_cluster, namespace, h.policy_manifest("later", {"rateLimit": {"requestsPerMinute": 5}})
    )

    ready = h.wait_for_agent(k8s_cluster, namespace, "waiting", h.is_ready, what="Ready")
    assert h.condition(ready, "Stalled")["status"] == "False"
    assert ready["status"]["appliedPolicies"] == [{"name": "later", "generation": 1}]


def test_a_spec_the_runtime_refuses_is_stalled_with_the_field(
    k8s_cluster: Cluster, namespace: str
) -> None:
    tool = {"name": "lookup", "url": "http://tools.invalid/", "parameters": {"type": "nonsense"}}
    agent = h.small_agent("odd-tool")
    agent["spec"]["agent"]["tools"] = [tool]
    h.apply(k8s_cluster, namespace, agent)

    stalled = h.wait_for_agent(
        k8s_cluster, namespace, "odd-tool", _stalled("InvalidSpec"), what="Stalled: InvalidSpec"
    )

    assert "spec.agent.tools[0].parameters" in h.condition(stalled, "Stalled")["message"]


def test_a_missing_prompt_configmap_is_reported_and_then_picked_up(
    k8s_cluster: Cluster, namespace: str
) -> None:
    agent = h.small_agent("prompted")
    agent["spec"]["agent"] = {
        "model": MODEL,
        "systemPromptFrom": {"configMapKeyRef": {"name": "prompts", "key": "support"}},
    }
    h.apply(k8s_cluster, namespace, agent)
    h.wait_for_agent(
        k8s_cluster,
        namespace,
        "prompted",
        _stalled("SystemPromptNotFound"),
        what="Stalled: SystemPromptNotFound",
    )

    prompts = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "prompts"},
        "data": {"support": "You are kind."},
    }
    h.apply(k8s_cluster, namespace, prompts)
    k8s_cluster.kubectl("annotate", "agd", "prompted", "-n", namespace, "touch=1")  # an edit

    h.wait_for_agent(k8s_cluster, namespace, "prompted", h.is_ready, what="Ready")
    configmap = h.get(k8s_cluster, "configmap", "prompted-runtime", namespace) or {}
    assert "systemPrompt: You are kind." in configmap["data"]["runtime.yaml"]
