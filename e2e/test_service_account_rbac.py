"""ServiceAccount tokens from the TokenRequest API authenticate, and RBAC limits them.

The operator and the agent pods act through ServiceAccounts and the chart grants them
Roles, so the control plane must mint tokens, accept them, refuse forged ones, and
authorize each request against exactly the rules granted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cluster.launcher import Cluster
from polling import wait_until

SA = "reader"


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig for the same API server that authenticates with token only."""
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": admin["clusters"],
                "users": [{"name": SA, "user": {"token": token}}],
                "contexts": [
                    {"name": SA, "context": {"cluster": admin["clusters"][0]["name"], "user": SA}}
                ],
                "current-context": SA,
            }
        )
    )
    return path


@pytest.fixture
def reader_kubeconfig(k8s_cluster: Cluster, k8s_namespace: str, tmp_path: Path) -> Path:
    ns = ["-n", k8s_namespace]
    k8s_cluster.kubectl("create", "serviceaccount", SA, *ns)
    k8s_cluster.kubectl(
        "create", "role", "configmap-reader", "--verb=get,list", "--resource=configmaps", *ns
    )
    k8s_cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=configmap-reader",
        f"--serviceaccount={k8s_namespace}:{SA}",
        *ns,
    )
    token = k8s_cluster.kubectl("create", "token", SA, "--duration=10m", *ns).stdout.strip()
    assert token.count(".") == 2, "TokenRequest should return a JWT"
    return token_kubeconfig(k8s_cluster, token, tmp_path / "reader.kubeconfig")


def as_reader(cluster: Cluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(*args, kubeconfig=kubeconfig, check=False)


def test_token_authenticates_as_the_service_account(
    k8s_cluster: Cluster, k8s_namespace: str, reader_kubeconfig: Path
) -> None:
    whoami = as_reader(k8s_cluster, reader_kubeconfig, "auth", "whoami", "-o", "json")

    assert whoami.returncode == 0, whoami.stderr
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{k8s_namespace}:{SA}"
    assert f"system:serviceaccounts:{k8s_namespace}" in user["groups"]


def test_forged_token_is_rejected(
    k8s_cluster: Cluster, reader_kubeconfig: Path, tmp_path: Path
) -> None:
    config = json.loads(reader_kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    header, payload, signature = token.split(".")
    forged = token_kubeconfig(
        k8s_cluster, f"{header}.{payload}.{signature[::-1]}", tmp_path / "forged.kubeconfig"
    )

    result = as_reader(k8s_cluster, forged, "get", "configmaps")

    assert result.returncode != 0
    assert "Unauthorized" in result.stderr


def test_rbac_allows_what_the_role_grants_and_denies_the_rest(
    k8s_cluster: Cluster, k8s_namespace: str, reader_kubeconfig: Path
) -> None:
    # The RoleBinding reaches the authorizer's cache asynchronously: wait for the grant.
    allowed = wait_until(
        lambda: as_reader(
            k8s_cluster, reader_kubeconfig, "get", "configmaps", "-n", k8s_namespace, "-o", "name"
        ),
        lambda r: r.returncode == 0,
        what="the Role to allow listing configmaps",
    )
    assert "configmap/kube-root-ca.crt" in allowed.stdout

    for args in (
        ("get", "secrets", "-n", k8s_namespace),  # a resource the Role does not name
        ("delete", "configmap", "kube-root-ca.crt", "-n", k8s_namespace),  # a verb it lacks
        ("get", "configmaps", "-n", "default"),  # another namespace
        ("get", "nodes"),  # cluster scope
    ):
        denied = as_reader(k8s_cluster, reader_kubeconfig, *args)
        assert denied.returncode != 0, args
        assert "Forbidden" in denied.stderr, (args, denied.stderr)
    assert (
        k8s_cluster.kubectl("get", "configmap", "kube-root-ca.crt", "-n", k8s_namespace).returncode
        == 0
    )
