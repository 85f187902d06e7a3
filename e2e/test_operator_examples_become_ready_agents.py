"""Applying crds/examples/ gives a Ready agent with every child, and kubectl shows it well.

The examples are what a new user applies first: the customer-support agent with two named
policies and one selecting it by label. On the local cluster KWOK plays the kubelet, so the
agent's pods become Running and Ready without running the image.
"""

from __future__ import annotations

from collections.abc import Iterator

import operator_harness as h
import pytest
import yaml
from cluster.launcher import Cluster
from polling import wait_until

AGENT = "customer-support"
POLICIES = ("cost-guard", "safety", "returns-review")


@pytest.fixture(scope="module")
def examples(k8s_cluster: Cluster, operator: h.OperatorProcess) -> Iterator[str]:
    """The examples applied into one namespace, the agent Ready."""
    with h.agent_namespace(k8s_cluster) as ns:
        k8s_cluster.kubectl("apply", "-n", ns, "-f", str(h.EXAMPLES))
        h.wait_for_agent(k8s_cluster, ns, AGENT, h.is_ready, what="Ready")
        yield ns


def test_every_child_exists_and_is_owned_by_the_agent(k8s_cluster: Cluster, examples: str) -> None:
    agent = h.get(k8s_cluster, "agd", AGENT, examples)
    assert agent is not None
    uid = agent["metadata"]["uid"]

    for kind, name in [
        ("configmap", f"{AGENT}-runtime"),
        ("deployment", AGENT),
        ("service", AGENT),
        ("serviceaccount", AGENT),
    ]:
        child = h.get(k8s_cluster, kind, name, examples, "--show-managed-fields")
        assert child is not None, f"{kind}/{name} missing"
        owners = child["metadata"]["ownerReferences"]
        assert [(o["uid"], o["controller"]) for o in owners] == [(uid, True)], kind
        managers = {m["manager"] for m in child["metadata"]["managedFields"]}
        assert "pilothouse-operator" in managers, kind
    # minReplicas 1: no PodDisruptionBudget that would block node drains
    assert h.get(k8s_cluster, "pdb", AGENT, examples) is None


def test_the_pods_run_the_rendered_config_with_every_policy(
    k8s_cluster: Cluster, examples: str
) -> None:
    agent = h.get(k8s_cluster, "agd", AGENT, examples)
    configmap = h.get(k8s_cluster, "configmap", f"{AGENT}-runtime", examples)
    deployment = h.get(k8s_cluster, "deployment", AGENT, examples)
    assert agent
    assert configmap
    assert deployment

    config = yaml.safe_load(configmap["data"]["runtime.yaml"])
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    status = agent["status"]

    assert [p["name"] for p in config["policies"]] == list(POLICIES)
    assert [p["name"] for p in status["appliedPolicies"]] == list(POLICIES)
    assert template["pilothouse.dev/config-hash"] == status["configHash"]
    assert (
        configmap["metadata"]["annotations"]["pilothouse.dev/config-hash"] == status["configHash"]
    )
    assert deployment["status"]["readyReplicas"] == 1
    assert status["readyReplicas"] == 1
    assert (
        status["selector"]
        == "app.kubernetes.io/name=pilothouse-agent,pilothouse.dev/agent=customer-support"
    )


def test_each_policy_says_where_it_applies(k8s_cluster: Cluster, examples: str) -> None:
    for name in POLICIES:
        policy = wait_until(
            lambda name=name: h.get(k8s_cluster, "agp", name, examples) or {},
            lambda p: p.get("status", {}).get("agents") == [AGENT],
            what=f"agp/{name} to list the agent",
        )
        assert policy["status"]["agentCount"] == 1
        assert h.condition(policy, "Ready")["status"] == "True"


def test_kubectl_get_shows_the_printer_columns(k8s_cluster: Cluster, examples: str) -> None:
    agents = k8s_cluster.kubectl("get", "agd", "-n", examples).stdout.splitlines()
    policies = k8s_cluster.kubectl("get", "agp", "-n", examples).stdout.splitlines()
    wide = k8s_cluster.kubectl("get", "pilothouse", "-n", examples, "-o", "wide").stdout

    assert agents[0].split() == ["NAME", "READY", "REPLICAS", "QUEUE", "AGE"]
    assert agents[1].split()[:3] == [AGENT, "True", "1"]
    assert policies[0].split() == ["NAME", "ENFORCEMENT", "AGENTS", "AGE"]
    rows = {line.split()[0]: line.split()[1:3] for line in policies[1:]}
    assert rows == {
        "cost-guard": ["enforce", "1"],
        "safety": ["enforce", "1"],
        "returns-review": ["dryRun", "1"],
    }
    assert "DESIRED" in wide
    assert "CONFIG" in wide


def test_events_tell_the_story(k8s_cluster: Cluster, examples: str) -> None:
    events = h.items(
        k8s_cluster, "events", examples, f"--field-selector=involvedObject.name={AGENT}"
    )
    reasons = {e["reason"] for e in events if e["involvedObject"]["kind"] == "AgentDeployment"}

    assert {"ConfigRendered", "RolloutComplete"} <= reasons


def test_the_operator_exports_its_metrics(operator: h.OperatorProcess, examples: str) -> None:
    metrics = operator.metrics()

    assert 'pilothouse_operator_reconciles_total{kind="AgentDeployment",result="ok"}' in metrics
    assert "pilothouse_operator_reconcile_duration_seconds_bucket" in metrics
