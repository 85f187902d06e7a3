"""An agent's spec may be large; the operator's bookkeeping is not, and deletion always completes.

Annotations are limited to 256 KiB in total. Kopf's default bookkeeping copied the whole spec
into one, so an agent with a long system prompt could never be patched again: Terminating for
good. Here: a 300 KiB prompt (applied server-side, as GitOps tools do) becomes Ready, the
operator's annotations stay small, and deleting it completes; a prompt longer than the runtime
ConfigMap can carry is refused by the schema naming the field; a spec whose rendered config is
too large for its ConfigMap is Stalled with the API server's message, and deleting it completes
too.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import operator_harness as h
from cluster.launcher import Cluster

from pilothouse.operator import api


def _apply_server_side(
    cluster: Cluster, namespace: str, doc: dict[str, Any], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(doc), check=check
    )


def _bookkeeping_size(obj: dict[str, Any]) -> int:
    annotations = obj["metadata"].get("annotations") or {}
    return sum(len(k) + len(v) for k, v in annotations.items() if k.startswith("pilothouse.dev/"))


def test_a_large_agent_runs_and_is_deleted(k8s_cluster: Cluster, namespace: str) -> None:
    agent = h.small_agent("large")
    agent["spec"]["agent"]["systemPrompt"] = "You help. " * (300 * 1024 // 10)
    _apply_server_side(k8s_cluster, namespace, agent)

    ready = h.wait_for_agent(k8s_cluster, namespace, "large", h.is_ready, what="Ready")
    assert 0 < _bookkeeping_size(ready) < 2048
    configmap = h.get(k8s_cluster, "configmap", "large-runtime", namespace)
    assert configmap is not None
    assert "You help. You help." in configmap["data"]["runtime.yaml"]

    k8s_cluster.kubectl("delete", "agd", "large", "-n", namespace, "--timeout=60s")
    assert h.get(k8s_cluster, "agd", "large", namespace) is None


def test_a_prompt_longer_than_a_configmap_holds_is_refused_naming_the_field(
    k8s_cluster: Cluster, namespace: str
) -> None:
    agent = h.small_agent("too-long")
    agent["spec"]["agent"]["systemPrompt"] = "x" * (api.MAX_PROMPT + 1)

    result = _apply_server_side(k8s_cluster, namespace, agent, check=False)

    assert result.returncode != 0
    assert "spec.agent.systemPrompt" in result.stderr
    assert "Too long" in result.stderr


def test_a_config_too_large_for_its_configmap_stalls_and_deletion_completes(
    k8s_cluster: Cluster, namespace: str
) -> None:
    agent = h.small_agent("overflow")
    agent["spec"]["agent"]["systemPrompt"] = "p" * (api.MAX_PROMPT - 1024)
    agent["spec"]["agent"]["tools"] = [
        {"name": f"tool{i}", "url": "http://tools.invalid/t", "description": "d" * api.MAX_TEXT}
        for i in range(24)
    ]
    _apply_server_side(k8s_cluster, namespace, agent)

    stalled = h.wait_for_agent(
        k8s_cluster,
        namespace,
        "overflow",
        lambda a: h.condition(a, "Stalled").get("status") == "True",
        what="Stalled",
    )
    condition = h.condition(stalled, "Stalled")
    assert condition["reason"] == "ApplyRejected"
    assert "overflow-runtime" in condition["message"]
    assert _bookkeeping_size(stalled) < 2048

    k8s_cluster.kubectl("delete", "agd", "overflow", "-n", namespace, "--timeout=60s")
    assert h.get(k8s_cluster, "agd", "overflow", namespace) is None
