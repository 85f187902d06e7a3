"""Killing the operator mid-way and starting it again converges, without duplicates.

The operator is SIGKILLed (no cleanup, as a crashed pod) while it works through a batch of new
agents; the next process resumes from the cluster's state: every agent Ready, exactly one of
each child, the pods of already-rendered agents not rolled again.
"""

from __future__ import annotations

from collections import Counter

import operator_harness as h
from cluster.launcher import Cluster
from polling import wait_until

AGENTS = [f"agent-{i}" for i in range(8)]


def _owned(cluster: Cluster, namespace: str, kind: str) -> Counter[str]:
    found = h.items(
        cluster, kind, namespace, "-l", "app.kubernetes.io/managed-by=pilothouse-operator"
    )
    return Counter(o["metadata"]["labels"]["pilothouse.dev/agent"] for o in found)


def test_a_killed_operator_converges_after_restart(
    k8s_cluster: Cluster, namespace: str, operator: h.OperatorProcess
) -> None:
    h.apply(
        k8s_cluster, namespace, h.policy_manifest("shared", {"rateLimit": {"requestsPerMinute": 9}})
    )
    h.apply(
        k8s_cluster,
        namespace,
        *(h.small_agent(name, policyRefs=[{"name": "shared"}]) for name in AGENTS),
    )
    wait_until(
        lambda: sum(_owned(k8s_cluster, namespace, "deployments").values()),
        lambda n: n >= 1,
        what="the first agent to get its Deployment",
        interval=0.05,
    )

    operator.kill()
    done_before = {
        name: (h.get(k8s_cluster, "agd", name, namespace) or {}).get("status", {}).get("configHash")
        for name in AGENTS
    }
    operator.start()

    for name in AGENTS:
        h.wait_for_agent(k8s_cluster, namespace, name, h.is_ready, what="Ready after the restart")
    for kind in ("deployments", "services", "configmaps", "serviceaccounts"):
        assert _owned(k8s_cluster, namespace, kind) == Counter(AGENTS), kind
    replica_sets = _owned(k8s_cluster, namespace, "replicasets")
    for name, config_hash in done_before.items():
        agent = h.get(k8s_cluster, "agd", name, namespace) or {}
        if config_hash:  # rendered before the kill: same config, so never rolled again
            assert agent["status"]["configHash"] == config_hash, name
            assert replica_sets[name] == 1, name
    shared = wait_until(
        lambda: h.get(k8s_cluster, "agp", "shared", namespace) or {},
        lambda p: p.get("status", {}).get("agentCount") == len(AGENTS),
        what="the policy to list every agent",
    )
    assert shared["status"]["agents"] == sorted(AGENTS)
