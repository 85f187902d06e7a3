"""Helm installs, waits for, and uninstalls a release on the cluster.

The Pilothouse chart is installed with the helm built beside the cluster, so helm must see
the server's real version (its kubeVersion constraints and .Capabilities depend on it),
wait for workloads to become ready, and remove everything on uninstall.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cluster.launcher import Cluster

CHART_YAML = """\
apiVersion: v2
name: probe
version: 0.1.0
kubeVersion: ">=1.30.0-0"
"""

TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-capabilities
data:
  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: 2
  selector:
    matchLabels: {app: {{ .Release.Name }}-web}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-web}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
"""


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    root = tmp_path / "probe"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(CHART_YAML)
    (root / "templates" / "all.yaml").write_text(TEMPLATE)
    return root


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.helm_path), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_release_installs_with_the_server_version_and_uninstalls_cleanly(
    k8s_cluster: Cluster, k8s_namespace: str, chart: Path
) -> None:
    ns = ["-n", k8s_namespace]
    installed = helm(k8s_cluster, "install", "probe", str(chart), *ns, "--wait", "--timeout=120s")
    assert installed.returncode == 0, installed.stderr

    server = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    config = json.loads(
        k8s_cluster.kubectl("get", "configmap", "probe-capabilities", *ns, "-o", "json").stdout
    )
    assert config["data"]["kubeVersion"] == server["gitVersion"]
    deployment = json.loads(
        k8s_cluster.kubectl("get", "deployment", "probe-web", *ns, "-o", "json").stdout
    )
    assert deployment["status"].get("readyReplicas") == 2  # --wait returned only once ready

    uninstalled = helm(k8s_cluster, "uninstall", "probe", *ns, "--wait", "--timeout=120s")
    assert uninstalled.returncode == 0, uninstalled.stderr
    for kind, name in (("deployment", "probe-web"), ("configmap", "probe-capabilities")):
        gone = k8s_cluster.kubectl("get", kind, name, *ns, check=False)
        assert "NotFound" in gone.stderr, (kind, gone.stdout)
    assert helm(k8s_cluster, "status", "probe", *ns).returncode != 0
