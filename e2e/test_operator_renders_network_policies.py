"""An agent's ``spec.network`` becomes a NetworkPolicy the real API server accepts, and its rules
say what the issue asks of them: the API port admits the namespaces and pods named (and the
monitoring namespace), a pod in any other namespace is refused, egress goes only to DNS and
the destinations named. The local control plane has no network plugin to enforce a policy, so
the policy as stored is evaluated here by the NetworkPolicy rules of the Kubernetes API
(label selectors, ports); and removing ``spec.network`` prunes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import operator_harness as h
from cluster.launcher import Cluster
from polling import wait_until

AGENT = "guarded"
NETWORK = {
    "apiFrom": [
        {"namespaceSelector": {"matchLabels": {"team": "chat"}}},
        {"podSelector": {"matchLabels": {"app": "batch"}}},
    ],
    "metricsFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ],
    "egress": [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}}],
            "ports": [{"port": 6379}, {"port": 5432}],
        },
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]},
    ],
}


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and In/NotIn/Exists/DoesNotExist) against labels."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or ():
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", ()),
            "NotIn": not present or value not in e.get("values", ()),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def admits(
    policy: Mapping[str, Any],
    *,
    policy_namespace: str,
    namespace: str,
    namespace_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    port: int,
) -> bool:
    """Whether a NetworkPolicy's ingress rules let a pod (in a namespace) connect to ``port``."""
    for rule in policy["spec"].get("ingress") or ():
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port for p in ports):
            continue
        for peer in rule.get("from") or ():
            if "ipBlock" in peer:
                continue
            ns_selector = peer.get("namespaceSelector")
            same_namespace_only = ns_selector is None
            if same_namespace_only and namespace != policy_namespace:
                continue
            if not same_namespace_only and not _selects(ns_selector, namespace_labels):
                continue
            if _selects(peer.get("podSelector"), pod_labels):
                return True
    return False


def test_spec_network_becomes_a_network_policy_that_refuses_other_namespaces(
    k8s_cluster: Cluster, namespace: str
) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT, network=NETWORK))
    policy = wait_until(
        lambda: h.get(k8s_cluster, "networkpolicy", AGENT, namespace),
        bool,
        what="the agent's NetworkPolicy",
    )
    spec = policy["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "pilothouse-agent", "pilothouse.dev/agent": AGENT}
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"]

    def from_(ns: str, ns_labels: dict[str, str], pod: dict[str, str], port: int = 8080) -> bool:
        return admits(
            policy,
            policy_namespace=namespace,
            namespace=ns,
            namespace_labels={"kubernetes.io/metadata.name": ns, **ns_labels},
            pod_labels=pod,
            port=port,
        )

    assert from_("chat-prod", {"team": "chat"}, {"app": "frontend"})
    assert from_(namespace, {}, {"app": "batch"})
    assert from_("monitoring", {}, {"app": "prometheus"})
    # Refused: a pod in another namespace, a pod of the agent's namespace not named, a port
    # other than the API's.
    assert not from_("intruder", {}, {"app": "batch"})
    assert not from_("intruder", {"team": "shop"}, {"app": "frontend"})
    assert not from_(namespace, {}, {"app": "other"})
    assert not from_("chat-prod", {"team": "chat"}, {"app": "frontend"}, port=6379)

    egress = spec["egress"]
    assert egress[0]["to"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    ]
    assert {(p["port"], p["protocol"]) for p in egress[0]["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert [p["port"] for p in egress[1]["ports"]] == [6379, 5432]
    assert egress[2] == {
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    assert len(egress) == 3  # nowhere else

    patch = json.dumps({"spec": {"network": None}})
    k8s_cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)
    wait_until(
        lambda: h.get(k8s_cluster, "networkpolicy", AGENT, namespace),
        lambda found: found is None,
        what="the NetworkPolicy pruned once spec.network is gone",
    )
