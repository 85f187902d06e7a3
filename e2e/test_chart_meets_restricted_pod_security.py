"""The chart's pods run in a namespace that enforces the restricted Pod Security Standard.

PodSecurity admission judges pods, not Deployments: a server-side dry run of a Deployment says
nothing. So the operator's Deployment is applied for real in a namespace labelled
``pod-security.kubernetes.io/enforce=restricted`` and the test waits for its pods to exist (KWOK
runs them), reading the ReplicaSet's FailedCreate events when they do not; the `helm test` pod
is dry-run as a Pod, which admission does judge. A deliberately weakened security context shows
that the same check fails when the standard is not met.
"""

from __future__ import annotations

import json

import helm_chart
import pytest
from cluster.launcher import Cluster
from polling import wait_until

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
SELECTOR = "app.kubernetes.io/component=operator"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture
def restricted_namespace(k8s_cluster: Cluster, k8s_namespace: str) -> str:
    k8s_cluster.kubectl(
        "label", "namespace", k8s_namespace, *(f"{k}={v}" for k, v in RESTRICTED.items())
    )
    return k8s_namespace


def apply_operator(
    cluster: Cluster, helm: helm_chart.Helm, namespace: str, sets: list[str]
) -> helm_chart.Doc:
    docs = helm.template("pilothouse", namespace, sets=sets)
    workload = helm_chart.kinds(docs, "ServiceAccount", "Deployment")
    cluster.kubectl("apply", "-f", "-", input=helm_chart.to_yaml(workload))
    return helm_chart.one(docs, "Deployment")


def pods(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", SELECTOR, "-o", "json").stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


def failed_creates(cluster: Cluster, namespace: str) -> list[str]:
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=FailedCreate", "-o", "json"
    ).stdout
    return [e["message"] for e in json.loads(out)["items"]]


@pytest.mark.parametrize("sets", [[], ["operator.standby.enabled=true"]], ids=["single", "standby"])
def test_operator_pods_are_admitted(
    k8s_cluster: Cluster, helm: helm_chart.Helm, restricted_namespace: str, sets: list[str]
) -> None:
    deployment = apply_operator(k8s_cluster, helm, restricted_namespace, sets)
    replicas = deployment["spec"]["replicas"]

    running = wait_until(
        lambda: (
            pods(k8s_cluster, restricted_namespace),
            failed_creates(k8s_cluster, restricted_namespace),
        ),
        lambda r: len(r[0]) == replicas or bool(r[1]),
        what=f"{replicas} operator pod(s) or a FailedCreate event",
    )

    assert running[1] == [], running[1]
    assert len(running[0]) == replicas


def test_helm_test_pod_is_admitted(
    k8s_cluster: Cluster, helm: helm_chart.Helm, restricted_namespace: str
) -> None:
    docs = helm.template("pilothouse", restricted_namespace)
    test_pod = helm_chart.one(docs, "Pod")
    accounts = helm_chart.kinds(docs, "ServiceAccount")
    k8s_cluster.kubectl("apply", "-f", "-", input=helm_chart.to_yaml(accounts))

    result = k8s_cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=helm_chart.to_yaml([test_pod]), check=False
    )

    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


def test_a_weakened_security_context_is_refused(
    k8s_cluster: Cluster, helm: helm_chart.Helm, restricted_namespace: str
) -> None:
    apply_operator(
        k8s_cluster,
        helm,
        restricted_namespace,
        ["operator.securityContext.allowPrivilegeEscalation=true"],
    )

    events = wait_until(
        lambda: failed_creates(k8s_cluster, restricted_namespace),
        bool,
        what="the ReplicaSet's FailedCreate event",
    )

    assert any('violates PodSecurity "restricted:latest"' in m for m in events), events
    assert any("allowPrivilegeEscalation" in m for m in events), events
    assert pods(k8s_cluster, restricted_namespace) == []
