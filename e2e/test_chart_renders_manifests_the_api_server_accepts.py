"""What `helm template` renders, the real API server accepts: default values and every ci/ file.

CRDs (the chart's own, Kopf's peering CRDs with a standby, the Prometheus Operator's for the
monitoring objects) are applied for real first, since custom objects can only be checked once
their kind exists, and so are ServiceAccounts, since admission refuses a pod whose account is
missing; then everything else, hooks and the `helm test` pod included, goes through a
server-side dry run: schema validation of every field, defaulting, and admission.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helm_chart
import pytest
from cluster.launcher import Cluster

# Namespaces ci/namespaced-rbac-values.yaml grants the operator Roles in.
CI_NAMESPACES = ("pilothouse-ci-team-a", "pilothouse-ci-team-b")
FIELD_MANAGER = "pilothouse-e2e"
CLUSTER_KINDS = {
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ClusterKopfPeering",
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory, k8s_cluster: Cluster) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path_factory.mktemp("helm")).with_kubeconfig(k8s_cluster.kubeconfig)


@pytest.fixture(scope="module")
def ci_namespaces(k8s_cluster: Cluster) -> Iterator[tuple[str, ...]]:
    for name in CI_NAMESPACES:
        k8s_cluster.kubectl("create", "namespace", name, check=False)
    yield CI_NAMESPACES
    for name in CI_NAMESPACES:
        k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply_crds(cluster: Cluster, crds: list[helm_chart.Doc]) -> None:
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=helm_chart.to_yaml(crds),
    )
    helm_chart.wait_established(cluster.kubectl, crds)


@pytest.mark.parametrize(
    "values_file", [None, *helm_chart.CI_VALUES], ids=lambda p: p.name if p else "defaults"
)
def test_server_side_dry_run_accepts_every_rendered_manifest(
    k8s_cluster: Cluster,
    k8s_namespace: str,
    helm: helm_chart.Helm,
    ci_namespaces: tuple[str, ...],
    values_file: Path | None,
) -> None:
    docs = helm.template("pilothouse", k8s_namespace, values=[values_file] if values_file else [])
    crds = [d for d in docs if helm_chart.is_crd(d)]
    rest = [d for d in docs if not helm_chart.is_crd(d)]
    if helm_chart.kinds(rest, "ServiceMonitor", "PrometheusRule"):
        crds += helm_chart.monitoring_crds()
    assert {"agentdeployments.pilothouse.dev", "agentpolicies.pilothouse.dev"} <= {
        d["metadata"]["name"] for d in crds
    }, "charts/pilothouse/crds/ is missing the Pilothouse CRDs: run `make crds`"
    for doc in rest:
        if doc["kind"] not in CLUSTER_KINDS:
            assert doc["metadata"].get("namespace"), f"{doc['kind']} {doc['metadata']['name']}"
    apply_crds(k8s_cluster, crds)
    accounts = helm_chart.kinds(rest, "ServiceAccount")
    k8s_cluster.kubectl("apply", "-f", "-", input=helm_chart.to_yaml(accounts))

    # No -n: every namespaced object names its namespace (the release's, or a watched one).
    result = k8s_cluster.kubectl(
        "apply",
        "--dry-run=server",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=helm_chart.to_yaml(rest),
        check=False,
    )

    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(rest), result.stdout
    for doc in rest:
        kind = doc["kind"].lower()
        assert any(f"{kind}" in line and doc["metadata"]["name"] in line for line in accepted), (
            f"{doc['kind']} {doc['metadata']['name']} missing from:\n{result.stdout}"
        )
