"""Without spec.scaling, spec.replicas rules and `kubectl scale` drives it; with spec.scaling the
autoscaler is the only writer and `kubectl scale` is refused with the reason."""

from __future__ import annotations

import operator_harness as h
from cluster.launcher import Cluster
from polling import wait_until


def test_kubectl_scale_sets_the_replicas_when_scaling_is_off(
    k8s_cluster: Cluster, namespace: str
) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent("manual"))
    h.wait_for_agent(k8s_cluster, namespace, "manual", h.is_ready, what="Ready")

    k8s_cluster.kubectl("scale", "agd/manual", "-n", namespace, "--replicas=3")

    agent = h.wait_for_agent(
        k8s_cluster,
        namespace,
        "manual",
        lambda a: h.is_ready(a) and a["status"].get("readyReplicas") == 3,
        what="3 ready replicas",
    )
    deployment = h.get(k8s_cluster, "deployment", "manual", namespace) or {}
    scale = k8s_cluster.kubectl(
        "get",
        "agd",
        "manual",
        "-n",
        namespace,
        "--subresource=scale",
        "-o",
        "jsonpath={.spec.replicas}/{.status.replicas}/{.status.selector}",
    )
    assert agent["spec"]["replicas"] == 3
    assert deployment["spec"]["replicas"] == 3
    assert scale.stdout == (
        "3/3/app.kubernetes.io/name=pilothouse-agent,pilothouse.dev/agent=manual"
    )
    wait_until(
        lambda: h.get(k8s_cluster, "pdb", "manual", namespace),
        lambda p: p is not None,
        what="a PodDisruptionBudget once two or more replicas run",
    )


def test_kubectl_scale_is_refused_while_the_autoscaler_owns_the_replicas(
    k8s_cluster: Cluster, namespace: str
) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent("auto", scaling={"maxReplicas": 4}))
    h.wait_for_agent(k8s_cluster, namespace, "auto", h.is_ready, what="Ready")

    result = k8s_cluster.kubectl("scale", "agd/auto", "-n", namespace, "--replicas=3", check=False)

    assert result.returncode != 0
    assert "spec.replicas cannot be set together with spec.scaling" in result.stderr
    assert "replicas" not in (h.get(k8s_cluster, "agd", "auto", namespace) or {})["spec"]
