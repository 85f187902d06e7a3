"""The GitOps example renders with kustomize and the real API server accepts every object."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cluster import launcher

ROOT = Path(__file__).resolve().parents[1]


def test_kustomization_renders_and_is_accepted_by_the_api_server(
    k8s_cluster: launcher.Cluster,
) -> None:
    k8s_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/agentdeployments.pilothouse.dev", "crd/agentpolicies.pilothouse.dev",
    )  # fmt: skip
    rendered = k8s_cluster.kubectl("kustomize", str(ROOT / "deploy" / "gitops")).stdout
    namespace = f"gitops-{uuid.uuid4().hex[:6]}"
    # The same objects in a fresh namespace, so the test never collides with another.
    rendered = rendered.replace("namespace: support", f"namespace: {namespace}").replace(
        "name: support\n", f"name: {namespace}\n"
    )
    try:
        k8s_cluster.kubectl("apply", "--server-side", "-f", "-", input=rendered)
        listed = json.loads(
            k8s_cluster.kubectl("get", "pilothouse", "-n", namespace, "-o", "json").stdout
        )
        kinds = sorted((i["kind"], i["metadata"]["name"]) for i in listed["items"])
        assert kinds == [
            ("AgentDeployment", "customer-support"),
            ("AgentPolicy", "cost-guard"),
            ("AgentPolicy", "returns-review"),
            ("AgentPolicy", "safety"),
        ]
        ns = json.loads(k8s_cluster.kubectl("get", "namespace", namespace, "-o", "json").stdout)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    finally:
        k8s_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
