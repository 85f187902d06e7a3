"""The API server itself enforces a CRD's CEL rules (x-kubernetes-validations).

Pilothouse's CRDs reject invalid specs this way, so the control plane the tests run on must
really evaluate CEL: a valid object is stored, an invalid one is refused with the rule's
message and is not stored.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from cluster.launcher import Cluster
from polling import wait_until

GROUP = "e2e.pilothouse.dev"
CRD_NAME = f"widgets.{GROUP}"
RULE_MESSAGE = "spec.minReplicas must not exceed spec.maxReplicas"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["minReplicas", "maxReplicas"],
                                "properties": {
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 1},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": RULE_MESSAGE,
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, namespace: str, min_replicas: int, max_replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
        }
    )


@pytest.fixture(scope="module")
def widget_crd(k8s_cluster: Cluster) -> Iterator[str]:
    k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    k8s_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    # Discovery of the new kind can lag behind Established; wait until kubectl resolves it.
    wait_until(
        lambda: k8s_cluster.kubectl("get", "widgets", "-A", check=False).returncode,
        lambda rc: rc == 0,
        what="the Widget kind to be served",
    )
    yield CRD_NAME
    k8s_cluster.kubectl("delete", "crd", CRD_NAME, "--wait=false", check=False)


def test_valid_object_is_stored(k8s_cluster: Cluster, widget_crd: str, k8s_namespace: str) -> None:
    k8s_cluster.kubectl("create", "-f", "-", input=widget("ok", k8s_namespace, 1, 3))

    stored = json.loads(
        k8s_cluster.kubectl("get", "widget", "ok", "-n", k8s_namespace, "-o", "json").stdout
    )
    assert stored["spec"] == {"minReplicas": 1, "maxReplicas": 3}


def test_object_breaking_the_cel_rule_is_rejected_with_its_message(
    k8s_cluster: Cluster, widget_crd: str, k8s_namespace: str
) -> None:
    with pytest.raises(subprocess.CalledProcessError) as rejected:
        k8s_cluster.kubectl("create", "-f", "-", input=widget("bad", k8s_namespace, 5, 2))

    assert "is invalid" in rejected.value.stderr
    assert RULE_MESSAGE in rejected.value.stderr
    missing = k8s_cluster.kubectl("get", "widget", "bad", "-n", k8s_namespace, check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_cel_rule_also_guards_updates(
    k8s_cluster: Cluster, widget_crd: str, k8s_namespace: str
) -> None:
    k8s_cluster.kubectl("create", "-f", "-", input=widget("edited", k8s_namespace, 1, 2))

    patch = json.dumps({"spec": {"minReplicas": 9}})
    refused = k8s_cluster.kubectl(
        "patch", "widget", "edited", "-n", k8s_namespace, "--type=merge", "-p", patch, check=False
    )

    assert refused.returncode != 0
    assert RULE_MESSAGE in refused.stderr
    stored = json.loads(
        k8s_cluster.kubectl("get", "widget", "edited", "-n", k8s_namespace, "-o", "json").stdout
    )
    assert stored["spec"]["minReplicas"] == 1
