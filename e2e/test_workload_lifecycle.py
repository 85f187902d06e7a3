"""Deployments run end to end: controllers, scheduler and (fake) kubelets all take part.

A Deployment gets a ReplicaSet and Pods, the scheduler binds them to nodes, the nodes'
kubelet (KWOK on the local cluster) reports them Running and Ready; scaling changes the Pod
count; deleting the Deployment garbage-collects its ReplicaSet and Pods.
"""

from __future__ import annotations

import json
from typing import Any

from cluster.launcher import Cluster
from polling import wait_until

APP = "e2e-web"


def deployment(namespace: str, replicas: int) -> str:
    labels = {"app": APP}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": APP, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
                },
            },
        }
    )


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(cluster, "pods", "-n", namespace, "-l", f"app={APP}")[
        "items"
    ]
    return items


def is_running_and_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )
    return status.get("phase") == "Running" and ready and "deletionTimestamp" not in pod["metadata"]


def all_running(count: int) -> Any:
    def condition(items: list[dict[str, Any]]) -> bool:
        return len(items) == count and all(is_running_and_ready(p) for p in items)

    return condition


def ready_nodes(cluster: Cluster) -> set[str]:
    return {
        n["metadata"]["name"]
        for n in get_json(cluster, "nodes")["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }


def test_deployment_pods_are_scheduled_and_become_running(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    k8s_cluster.kubectl("apply", "-f", "-", input=deployment(k8s_namespace, 2))

    running = wait_until(
        lambda: pods(k8s_cluster, k8s_namespace), all_running(2), what="2 running, ready pods"
    )

    replica_sets = get_json(k8s_cluster, "replicasets", "-n", k8s_namespace)["items"]
    assert len(replica_sets) == 1
    owner = replica_sets[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", APP)
    nodes = ready_nodes(k8s_cluster)
    for pod in running:
        assert pod["metadata"]["ownerReferences"][0]["name"] == replica_sets[0]["metadata"]["name"]
        assert pod["spec"]["nodeName"] in nodes
        assert pod["status"].get("podIP")
    status = wait_until(
        lambda: get_json(k8s_cluster, "deployment", APP, "-n", k8s_namespace)["status"],
        lambda s: s.get("readyReplicas") == 2 and s.get("availableReplicas") == 2,
        what="the Deployment to report 2 available replicas",
    )
    assert status["replicas"] == 2


def test_scaling_changes_the_pod_count(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    k8s_cluster.kubectl("apply", "-f", "-", input=deployment(k8s_namespace, 1))
    wait_until(lambda: pods(k8s_cluster, k8s_namespace), all_running(1), what="1 running pod")

    k8s_cluster.kubectl("scale", f"deployment/{APP}", "-n", k8s_namespace, "--replicas=4")
    wait_until(lambda: pods(k8s_cluster, k8s_namespace), all_running(4), what="4 running pods")

    k8s_cluster.kubectl("scale", f"deployment/{APP}", "-n", k8s_namespace, "--replicas=2")
    wait_until(
        lambda: pods(k8s_cluster, k8s_namespace),
        all_running(2),
        what="2 running pods and the other 2 gone",
    )


def test_deleting_the_deployment_garbage_collects_its_children(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    k8s_cluster.kubectl("apply", "-f", "-", input=deployment(k8s_namespace, 3))
    wait_until(lambda: pods(k8s_cluster, k8s_namespace), all_running(3), what="3 running pods")

    # Background propagation: only the garbage collector removes the ReplicaSet and Pods.
    k8s_cluster.kubectl(
        "delete", "deployment", APP, "-n", k8s_namespace, "--cascade=background", "--wait=false"
    )

    wait_until(
        lambda: get_json(k8s_cluster, "replicasets", "-n", k8s_namespace)["items"],
        lambda items: items == [],
        what="the ReplicaSet to be garbage-collected",
    )
    wait_until(
        lambda: pods(k8s_cluster, k8s_namespace),
        lambda items: items == [],
        what="the Pods to be garbage-collected",
    )
