"""Two operator processes in one Kopf peering: the standby takes over soon after a SIGKILL.

The active replica (the higher priority) does the work; the standby pauses. After a ``kill -9``
of the active one, a change made to an agent is reconciled by the standby, within the deadline
the operator promises (its peering lifetime of 10 s, plus a reconcile): 15 s. Who did what is
read from the Events' ``reportingInstance``, which names each process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_chart
import operator_harness as h
import pytest
from cluster.launcher import Cluster
from polling import wait_until

PEERING = f"e2e-takeover-{uuid.uuid4().hex[:6]}"
AGENT = "handed-over"
TAKEOVER_DEADLINE = 15.0  # the promise: the peering lifetime (10 s) plus a reconcile


@pytest.fixture(scope="module")
def peering(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Kopf's peering CRDs (from the chart) and a ClusterKopfPeering for this module."""
    helm = helm_chart.helm(tmp_path_factory.mktemp("helm"))
    docs = helm.template(sets=["operator.standby.enabled=true"])
    crds = [d for d in docs if helm_chart.is_crd(d)]
    k8s_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=helm_chart.to_yaml(crds)
    )
    helm_chart.wait_established(k8s_cluster.kubectl, crds)
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": PEERING},
    }
    k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(peering))
    try:
        yield PEERING
    finally:
        k8s_cluster.kubectl("delete", "clusterkopfpeering", PEERING, check=False)


@pytest.fixture
def pair(
    k8s_cluster: Cluster, peering: str, tmp_path: Path
) -> Iterator[tuple[h.OperatorProcess, h.OperatorProcess]]:
    h.install_crds(k8s_cluster)
    (tmp_path / "active").mkdir()
    (tmp_path / "standby").mkdir()
    active = h.OperatorProcess(
        k8s_cluster, log_dir=tmp_path / "active", args=[f"--peering={peering}", "--priority=200"],
        redis_url=None,
    )  # fmt: skip
    standby = h.OperatorProcess(
        k8s_cluster, log_dir=tmp_path / "standby", args=[f"--peering={peering}", "--priority=100"],
        redis_url=None,
    )  # fmt: skip
    try:
        active.start()
        standby.start()
        yield active, standby
    finally:
        standby.stop()
        active.stop()


def _instances(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    events = h.items(
        cluster, "events", namespace,
        f"--field-selector=involvedObject.name={AGENT},reason={reason}",
    )  # fmt: skip
    return [str(e.get("reportingInstance", "")) for e in events]


def _config_hash(cluster: Cluster, namespace: str) -> Any:
    found = h.get(cluster, "agd", AGENT, namespace) or {}
    return (found.get("status") or {}).get("configHash")


def test_the_standby_takes_over_after_a_kill(
    k8s_cluster: Cluster, pair: tuple[h.OperatorProcess, h.OperatorProcess]
) -> None:
    active, _standby = pair
    with h.agent_namespace(k8s_cluster) as namespace:
        h.apply(k8s_cluster, namespace, h.redis_secret("redis://127.0.0.1:1/0"))
        h.apply(k8s_cluster, namespace, h.small_agent(AGENT))
        h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")
        first = _instances(k8s_cluster, namespace, "ConfigRendered")
        assert len(first) == 1  # one process worked, the other stood by
        before = _config_hash(k8s_cluster, namespace)
        peers = json.loads(
            k8s_cluster.kubectl("get", "clusterkopfpeering", PEERING, "-o", "json").stdout
        )["status"]
        assert sorted(p["priority"] for p in peers.values()) == [100, 200]
        assert {p["lifetime"] for p in peers.values()} == {10}  # what bounds the takeover

        active.kill()
        patch = json.dumps({"spec": {"agent": {"systemPrompt": "You help, from the standby."}}})
        k8s_cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)
        wait_until(
            lambda: _config_hash(k8s_cluster, namespace),
            lambda config_hash: config_hash != before,
            what="the standby to render the changed prompt",
            timeout=TAKEOVER_DEADLINE,
        )

        h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready again")
        rendered = _instances(k8s_cluster, namespace, "ConfigRendered")
        assert len(rendered) == 2
        assert len(set(rendered)) == 2  # the second by the other process
