"""No pipeline reads an agent as healthy before the operator acted on it.

A resource without status is Current for kstatus (Flux, ``kubectl wait``). So the CRD's schema
defaults ``status.observedGeneration`` to 0 (in progress, even while no operator runs), and the
operator's very first act on a new generation is writing ``observedGeneration`` with
``Reconciling=True``: before Kopf's finalizer, before any child. Checked on the real API server
in the order of events (a watch of every version of the agent, and the operator's requests
through a recording proxy) and with the Argo CD health checks of deploy/gitops/argocd/ run on
every version seen.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import api_recorder
import argocd_health
import chart_operator
import operator_harness as h
import pytest
from cluster.launcher import Cluster
from polling import wait_until

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def _versions(stream: str) -> list[dict[str, Any]]:
    """The objects of a ``kubectl get -w -o json`` stream, in order."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while True:
        while at < len(stream) and stream[at].isspace():
            at += 1
        if at >= len(stream):
            return found
        obj, at = decoder.raw_decode(stream, at)
        found.append(obj)


@pytest.fixture
def admin_token(k8s_cluster: Cluster, k8s_namespace: str) -> Iterator[str]:
    """A ServiceAccount token with cluster-admin, so the operator can run behind the recorder."""
    account = f"acting-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "serviceaccount", account, "-n", k8s_namespace)
    k8s_cluster.kubectl(
        "create", "clusterrolebinding", account, "--clusterrole=cluster-admin",
        f"--serviceaccount={k8s_namespace}:{account}",
    )  # fmt: skip
    try:
        yield chart_operator.service_account_token(k8s_cluster, k8s_namespace, account)
    finally:
        k8s_cluster.kubectl("delete", "clusterrolebinding", account, check=False)


def test_without_an_operator_an_agent_reads_as_in_progress(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    h.install_crds(k8s_cluster)
    h.apply(k8s_cluster, k8s_namespace, h.small_agent("untouched"))
    h.apply(k8s_cluster, k8s_namespace, h.policy_manifest("untouched", {}))

    agent = h.get(k8s_cluster, "agd", "untouched", k8s_namespace)
    policy = h.get(k8s_cluster, "agp", "untouched", k8s_namespace)

    for obj in (agent, policy):
        assert obj is not None
        # kstatus: observedGeneration present and behind metadata.generation -> InProgress.
        assert obj["status"]["observedGeneration"] == 0
        assert not obj["status"].get("conditions")
        assert obj["metadata"]["generation"] == 1
        assert argocd_health.health(obj) == "Progressing"


def test_the_operators_first_act_is_reconciling_with_the_generation(
    k8s_cluster: Cluster, k8s_namespace: str, admin_token: str, tmp_path: Path
) -> None:
    h.install_crds(k8s_cluster)
    agents = f"e2e-ack-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "namespace", agents)
    h.apply(k8s_cluster, agents, h.redis_secret(UNREACHABLE_REDIS))
    watch = subprocess.Popen(
        [str(k8s_cluster.kubectl_path), "get", "agd", "-n", agents, "-w", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=k8s_cluster.env(),
        text=True,
    )
    server, ca = chart_operator.api_server(k8s_cluster, tmp_path)
    try:
        with api_recorder.ApiRecorder(server, ca) as recorder:
            kubeconfig = recorder.kubeconfig(admin_token, tmp_path / "operator.kubeconfig")
            args = ["--all-namespaces", "--standalone"]
            with chart_operator.running(args, kubeconfig, tmp_path, pod_id="ack-0") as operator:
                wait_until(operator.healthy, bool, what="the operator's /healthz")
                h.apply(k8s_cluster, agents, h.small_agent("first"))
                h.wait_for_agent(k8s_cluster, agents, "first", h.is_ready, what="Ready")
                requests = recorder.recorded()
                watch.terminate()
                k8s_cluster.kubectl("delete", "agd", "--all", "-n", agents, "--timeout=60s")
    finally:
        watch.terminate()
        stream, _ = watch.communicate(timeout=30)
        k8s_cluster.kubectl("delete", "namespace", agents, "--wait=false", check=False)

    # The operator's writes about this agent, in order: the status first.
    base = f"/apis/pilothouse.dev/v1alpha1/namespaces/{agents}/agentdeployments/first"
    writes = [
        r
        for r in requests
        if r.method in ("PATCH", "PUT", "POST") and f"/namespaces/{agents}/" in r.path
    ]
    assert writes, "the operator wrote nothing"
    assert (writes[0].method, writes[0].path) == ("PATCH", base + "/status"), writes[:3]

    versions = _versions(stream)
    assert versions[0]["status"] == {"observedGeneration": 0}  # the schema's default
    with_conditions = [v for v in versions if v["status"].get("conditions")]
    first = with_conditions[0]["status"]
    assert first["observedGeneration"] == 1
    reconciling = h.condition(with_conditions[0], "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ReconcileStarted")

    # Argo CD: in progress until the operator says Ready, never healthy before.
    healths = [argocd_health.health(v) for v in versions]
    assert healths[0] == "Progressing"
    assert healths[-1] == "Healthy"
    first_healthy = healths.index("Healthy")
    assert set(healths[:first_healthy]) == {"Progressing"}
    assert h.is_ready(versions[first_healthy])
