"""Someone else's change to an agent's children is put back at once, by watching them.

The operator here runs with ``--resync-interval=0``: no periodic reconcile at all, so whatever is
put back was put back because the operator watched the child change. ``kubectl scale`` of the
Deployment, a deleted runtime ConfigMap or ServiceAccount, an edited Service selector or
PodDisruptionBudget: each comes back as the operator built it. Meanwhile the agent never reports
Ready for a replica count its spec does not ask for (every version of the agent is watched).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import operator_harness as h
import pytest
from cluster.launcher import Cluster
from polling import wait_until

AGENT = "steady"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[h.OperatorProcess]:
    """The operator without the periodic resync: only watches can correct drift."""
    log_dir = tmp_path_factory.mktemp("operator")
    with h.running_operator(k8s_cluster, log_dir, args=["--resync-interval=0"]) as proc:
        yield proc


def _versions(stream: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found, at = [], 0
    while True:
        while at < len(stream) and stream[at].isspace():
            at += 1
        if at >= len(stream):
            return found
        obj, at = decoder.raw_decode(stream, at)
        found.append(obj)


def _uid(cluster: Cluster, kind: str, name: str, namespace: str) -> str | None:
    found = h.get(cluster, kind, name, namespace)
    return None if found is None else str(found["metadata"]["uid"])


def test_changed_and_deleted_children_are_put_back(
    k8s_cluster: Cluster, namespace: str, operator: h.OperatorProcess, tmp_path: Path
) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT, replicas=2))
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready with 2 replicas")
    watch_log = tmp_path / "agent-versions.json"
    with watch_log.open("w") as out:
        watch = subprocess.Popen(
            [
                str(k8s_cluster.kubectl_path),
                "get",
                "agd",
                AGENT,
                "-n",
                namespace,
                "-w",
                "-o",
                "json",
            ],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=k8s_cluster.env(),
        )
    try:
        # kubectl scale of the Deployment: back to the agent's 2.
        k8s_cluster.kubectl("scale", "deployment", AGENT, "-n", namespace, "--replicas=7")
        wait_until(
            lambda: h.get(k8s_cluster, "deployment", AGENT, namespace)["spec"]["replicas"],
            lambda replicas: replicas == 2,
            what="the Deployment scaled back to 2",
        )

        # Deleted children come back (new objects, new uids).
        for kind, name in (("configmap", f"{AGENT}-runtime"), ("serviceaccount", AGENT)):
            before = _uid(k8s_cluster, kind, name, namespace)
            k8s_cluster.kubectl("delete", kind, name, "-n", namespace)
            wait_until(
                lambda kind=kind, name=name: _uid(k8s_cluster, kind, name, namespace),
                lambda uid, before=before: uid is not None and uid != before,
                what=f"{kind}/{name} recreated",
            )

        # Edited fields the operator owns are put back.
        selector = h.get(k8s_cluster, "service", AGENT, namespace)["spec"]["selector"]
        patch = json.dumps({"spec": {"selector": dict.fromkeys(selector, "elsewhere")}})
        k8s_cluster.kubectl("patch", "service", AGENT, "-n", namespace, "--type=merge", "-p", patch)
        wait_until(
            lambda: h.get(k8s_cluster, "service", AGENT, namespace)["spec"]["selector"],
            lambda found: found == selector,
            what="the Service's selector put back",
        )
        patch = json.dumps({"spec": {"maxUnavailable": 2}})
        k8s_cluster.kubectl("patch", "pdb", AGENT, "-n", namespace, "--type=merge", "-p", patch)
        wait_until(
            lambda: h.get(k8s_cluster, "pdb", AGENT, namespace)["spec"]["maxUnavailable"],
            lambda value: value == 1,
            what="the budget's maxUnavailable put back to 1",
        )
        h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready again")
    finally:
        watch.terminate()
        watch.wait(timeout=30)

    versions = _versions(watch_log.read_text())
    ready = [h.condition(v, "Ready") for v in versions]
    wrong = [c for c in ready if c.get("status") == "True" and "of 2 " not in c.get("message", "")]
    assert not wrong, f"Ready for a count the spec does not ask for: {wrong}"
    assert any(c.get("status") == "False" for c in ready), "the drift never showed in Ready"
