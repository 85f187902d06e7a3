"""`helm install`, `helm test` and `helm uninstall` of the Pilothouse chart on a real API server.

The release installs and becomes ready (KWOK runs its pods); `helm test` fails while nothing
answers behind the operator's Service and passes once the operator runs as the chart's pod
would (e2e/chart_operator.py), its test pod run for real by e2e/pod_runner.py with the test
ServiceAccount's token (so the test's own RBAC is exercised too); `helm uninstall` leaves no
object of the release behind, cluster-scoped ones included, but the CRDs it keeps as documented.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import chart_operator
import helm_chart
import pytest
from cluster.launcher import Cluster
from pod_runner import TestPodRunner
from polling import wait_until

from pilothouse.runtime import devservers

CRDS = ("agentdeployments.pilothouse.dev", "agentpolicies.pilothouse.dev")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory, k8s_cluster: Cluster) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path_factory.mktemp("helm")).with_kubeconfig(k8s_cluster.kubeconfig)


def release_objects(cluster: Cluster, release: str) -> list[str]:
    """Every object, in any namespace or none, labelled as part of the release."""
    kinds = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    found = cluster.kubectl(
        "get", ",".join(kinds), "--all-namespaces", "--ignore-not-found",
        "-l", f"{helm_chart.INSTANCE_LABEL}={release}", "-o", "name",
    )  # fmt: skip
    return sorted(found.stdout.split())


def helm_test(
    helm: helm_chart.Helm, cluster: Cluster, release: str, namespace: str, workdir: Path, local: str
) -> tuple[int, str]:
    """`helm test`, its pod run here with the operator's Service URL mapped to ``local``."""
    service = f"http://{release}-pilothouse-operator.{namespace}.svc:8081"
    with TestPodRunner(cluster, namespace, workdir, service_urls={service: local}) as runner:
        result = helm.run("test", release, "-n", namespace, "--timeout=120s", check=False)
    assert runner.errors == []
    output = "\n".join(r.stdout + r.stderr for r in runner.results.values())
    assert runner.results, f"no test pod ran:\n{result.stdout}\n{result.stderr}"
    return result.returncode, output


def test_release_installs_passes_helm_test_and_uninstalls_cleanly(
    k8s_cluster: Cluster, k8s_namespace: str, helm: helm_chart.Helm, tmp_path: Path
) -> None:
    release = f"ph-{uuid.uuid4().hex[:6]}"
    # The session's CRDs were applied with kubectl: the release takes them over, as a user's
    # first `helm install` into a cluster that has them does (README: Install).
    helm.run(
        "install", release, str(helm_chart.CHART_DIR), "-n", k8s_namespace,
        "--wait", "--timeout=120s", "--set", "tests.timeoutSeconds=5", "--take-ownership",
    )  # fmt: skip
    deployment = json.loads(
        k8s_cluster.kubectl(
            "get", "deployment", f"{release}-pilothouse-operator", "-n", k8s_namespace, "-o", "json"
        ).stdout
    )
    assert deployment["status"].get("availableReplicas") == 1
    assert release_objects(k8s_cluster, release)

    # Nothing behind the operator's Service: the test pod fails, and says which check.
    nowhere = f"http://127.0.0.1:{devservers.free_port()}"
    code, output = helm_test(helm, k8s_cluster, release, k8s_namespace, tmp_path, nowhere)
    assert code != 0
    assert "FAIL operator health" in output
    for crd in CRDS:
        assert f"ok   CRD {crd} established" in output

    # The operator running as the chart's pod would (its args, its ServiceAccount): passes.
    pod_spec = deployment["spec"]["template"]["spec"]
    token = chart_operator.service_account_token(
        k8s_cluster, k8s_namespace, pod_spec["serviceAccountName"]
    )
    kubeconfig = chart_operator.token_kubeconfig(k8s_cluster, token, tmp_path / "sa.kubeconfig")
    args = pod_spec["containers"][0]["args"]
    with chart_operator.running(args, kubeconfig, tmp_path, pod_id=f"{release}-0") as operator:
        wait_until(operator.healthy, bool, what="the operator's /healthz")
        local = f"http://127.0.0.1:{operator.health_port}"
        code, output = helm_test(helm, k8s_cluster, release, k8s_namespace, tmp_path, local)
    assert code == 0, output
    assert "ok   operator health" in output

    helm.run("uninstall", release, "-n", k8s_namespace, "--wait", "--timeout=120s")

    # Everything goes but the CRDs (helm.sh/resource-policy: keep), and with them every agent.
    kept = [f"customresourcedefinition.apiextensions.k8s.io/{crd}" for crd in CRDS]
    wait_until(
        lambda: release_objects(k8s_cluster, release),
        lambda left: left == kept,
        what=f"every object of release {release} but the CRDs to be gone",
    )
