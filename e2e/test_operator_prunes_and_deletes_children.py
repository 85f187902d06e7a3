"""Children no longer wanted are pruned; deleting the agent removes every child."""

from __future__ import annotations

import json

import operator_harness as h
from cluster.launcher import Cluster
from polling import wait_until

AGENT = "short-lived"
SELECTOR = f"pilothouse.dev/agent={AGENT}"
KINDS = "deployment,service,configmap,serviceaccount,pdb"


def _children(cluster: Cluster, namespace: str) -> list[str]:
    found = h.items(cluster, KINDS, namespace, "-l", SELECTOR)
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in found)


def test_a_budget_that_is_no_longer_wanted_is_pruned(k8s_cluster: Cluster, namespace: str) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT, replicas=2))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready with 2 replicas")
    assert h.get(k8s_cluster, "pdb", AGENT, namespace) is not None

    patch = json.dumps({"spec": {"replicas": 1}})
    k8s_cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)

    wait_until(
        lambda: h.get(k8s_cluster, "pdb", AGENT, namespace),
        lambda p: p is None,
        what="the PodDisruptionBudget to be pruned",
    )
    events = h.items(
        k8s_cluster, "events", namespace, f"--field-selector=involvedObject.name={AGENT}"
    )
    assert any(
        e["reason"] == "ChildrenPruned" and "PodDisruptionBudget" in e["message"] for e in events
    )


def test_deleting_the_agent_removes_every_child(k8s_cluster: Cluster, namespace: str) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT, replicas=2))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")
    assert _children(k8s_cluster, namespace) == [
        f"ConfigMap/{AGENT}-runtime",
        f"Deployment/{AGENT}",
        f"PodDisruptionBudget/{AGENT}",
        f"Service/{AGENT}",
        f"ServiceAccount/{AGENT}",
    ]

    k8s_cluster.kubectl("delete", "agd", AGENT, "-n", namespace, "--timeout=60s")

    wait_until(
        lambda: _children(k8s_cluster, namespace),
        lambda c: c == [],
        what="the garbage collector to remove the children",
    )
    pods = wait_until(
        lambda: h.items(k8s_cluster, "pods", namespace, "-l", SELECTOR),
        lambda p: p == [],
        what="the pods to go",
    )
    assert pods == []


def test_a_deleted_deployment_is_recreated(k8s_cluster: Cluster, namespace: str) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")
    first = (h.get(k8s_cluster, "deployment", AGENT, namespace) or {})["metadata"]["uid"]

    k8s_cluster.kubectl("delete", "deployment", AGENT, "-n", namespace)

    again = wait_until(
        lambda: h.get(k8s_cluster, "deployment", AGENT, namespace) or {},
        lambda d: d.get("metadata", {}).get("uid") not in (None, first),
        what="the Deployment to be recreated",
    )
    assert again["spec"]["template"]["metadata"]["annotations"]["pilothouse.dev/config-hash"]
