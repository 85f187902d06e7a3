"""A change of the agent or of any policy it uses re-renders the config and rolls the pods.

GitOps' promise: commit a policy change and it is live in the pods after one rollout, and both
statuses say so (the agent's appliedPolicies carry the policy's generation; the policy lists
its agents).
"""

from __future__ import annotations

import json
from typing import Any

import operator_harness as h
import yaml
from cluster.launcher import Cluster
from polling import wait_until

AGENT = "roller"


def _hashes(cluster: Cluster, ns: str) -> tuple[str, str, str]:
    agent = h.get(cluster, "agd", AGENT, ns) or {}
    deployment = h.get(cluster, "deployment", AGENT, ns) or {}
    configmap = h.get(cluster, "configmap", f"{AGENT}-runtime", ns) or {}
    template = deployment.get("spec", {}).get("template", {}).get("metadata", {})
    return (
        agent.get("status", {}).get("configHash", ""),
        (template.get("annotations") or {}).get("pilothouse.dev/config-hash", ""),
        (configmap.get("metadata", {}).get("annotations") or {}).get(
            "pilothouse.dev/config-hash", ""
        ),
    )


def _config(cluster: Cluster, ns: str) -> dict[str, Any]:
    configmap = h.get(cluster, "configmap", f"{AGENT}-runtime", ns) or {}
    loaded: dict[str, Any] = yaml.safe_load(configmap["data"]["runtime.yaml"])
    return loaded


def _rolled_to_new_config(cluster: Cluster, ns: str, old: str) -> tuple[str, str, str]:
    def probe() -> tuple[str, str, str, bool]:
        agent = h.get(cluster, "agd", AGENT, ns) or {}
        return (*_hashes(cluster, ns), h.is_ready(agent))

    found = wait_until(
        probe,
        lambda r: r[0] != old and r[0] == r[1] == r[2] and r[3],
        what="a new config hash on the agent, its pods and its ConfigMap, Ready",
    )
    return found[0], found[1], found[2]


def test_an_agent_change_rolls_the_pods(k8s_cluster: Cluster, namespace: str) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")
    before, _, _ = _hashes(k8s_cluster, namespace)

    patch = json.dumps({"spec": {"agent": {"maxSteps": 4}}})
    k8s_cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)
    after, _, _ = _rolled_to_new_config(k8s_cluster, namespace, before)

    assert _config(k8s_cluster, namespace)["maxSteps"] == 4
    agent = h.get(k8s_cluster, "agd", AGENT, namespace) or {}
    assert agent["status"]["observedGeneration"] == agent["metadata"]["generation"] == 2
    assert after != before


def test_a_policy_change_rolls_every_agent_that_uses_it(
    k8s_cluster: Cluster, namespace: str
) -> None:
    h.apply(
        k8s_cluster, namespace, h.policy_manifest("guard", {"costLimit": {"maxUsdPerHour": 10}})
    )
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT, policyRefs=[{"name": "guard"}]))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")
    before, _, _ = _hashes(k8s_cluster, namespace)

    patch = json.dumps({"spec": {"costLimit": {"maxUsdPerHour": 20}}})
    k8s_cluster.kubectl("patch", "agp", "guard", "-n", namespace, "--type=merge", "-p", patch)
    _rolled_to_new_config(k8s_cluster, namespace, before)

    (policy,) = _config(k8s_cluster, namespace)["policies"]
    assert (policy["name"], policy["generation"], policy["costLimit"]) == (
        "guard",
        2,
        {"maxUsdPerHour": 20.0},
    )
    agent = h.get(k8s_cluster, "agd", AGENT, namespace) or {}
    assert agent["status"]["appliedPolicies"] == [{"name": "guard", "generation": 2}]
    guard = wait_until(
        lambda: h.get(k8s_cluster, "agp", "guard", namespace) or {},
        lambda p: p.get("status", {}).get("observedGeneration") == 2,
        what="the policy's status to follow its generation",
    )
    assert guard["status"]["agents"] == [AGENT]


def test_a_selector_policy_follows_the_agents_labels(k8s_cluster: Cluster, namespace: str) -> None:
    selecting = {
        "enforcement": "dryRun",
        "targetSelector": {"matchLabels": {"team": "support"}},
        "rateLimit": {"requestsPerMinute": 60},
    }
    h.apply(k8s_cluster, namespace, h.policy_manifest("team-rate", selecting))
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")

    k8s_cluster.kubectl("label", "agd", AGENT, "-n", namespace, "team=support")
    labelled = h.wait_for_agent(
        k8s_cluster,
        namespace,
        AGENT,
        lambda a: (
            [p["name"] for p in a.get("status", {}).get("appliedPolicies", [])] == ["team-rate"]
        ),
        what="the selecting policy applied",
    )
    policy = wait_until(
        lambda: h.get(k8s_cluster, "agp", "team-rate", namespace) or {},
        lambda p: p.get("status", {}).get("agents") == [AGENT],
        what="the policy to list the agent",
    )
    assert [p["name"] for p in _config(k8s_cluster, namespace)["policies"]] == ["team-rate"]

    k8s_cluster.kubectl("label", "agd", AGENT, "-n", namespace, "team-")
    h.wait_for_agent(
        k8s_cluster,
        namespace,
        AGENT,
        lambda a: a.get("status", {}).get("appliedPolicies", []) == [],
        what="the policy no longer applied",
    )
    wait_until(
        lambda: h.get(k8s_cluster, "agp", "team-rate", namespace) or {},
        lambda p: p.get("status", {}).get("agentCount") == 0,
        what="the policy to list no agent",
    )
    assert labelled["status"]["configHash"] != _hashes(k8s_cluster, namespace)[0]
    assert policy["status"]["agentCount"] == 1
