"""A Secret (or key) an agent's pods reference but that does not exist stalls the agent.

On a real node such pods would sit in ``CreateContainerConfigError`` while the agent claimed
Ready. Here: the agent is Stalled (``SecretNotFound``) with a warning Event naming the field and
the Secret, and nothing is rolled out; a Secret without the key is still reported; once the key
exists the agent becomes Ready by itself (the operator checks again every 10 s: no watch on
Secrets). The check fetches Secrets as metadata only and reads their keys from managedFields.
"""

from __future__ import annotations

import operator_harness as h
from cluster.launcher import Cluster

AGENT = "keyless"


def _secret(name: str, **data: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def _stalled_with(reason_text: str):  # type: ignore[no-untyped-def]
    def check(agent: dict[str, object]) -> bool:
        stalled = h.condition(agent, "Stalled")
        return stalled.get("status") == "True" and reason_text in stalled.get("message", "")

    return check


def test_a_missing_secret_stalls_until_it_appears(k8s_cluster: Cluster, namespace: str) -> None:
    agent = h.small_agent(AGENT)
    agent["spec"]["agent"]["model"]["apiKeySecretRef"] = {"name": "llm-key", "key": "api-key"}
    h.apply(k8s_cluster, namespace, agent)

    stalled = h.wait_for_agent(
        k8s_cluster, namespace, AGENT, _stalled_with("Secret llm-key not found"), what="Stalled"
    )
    condition = h.condition(stalled, "Stalled")
    assert condition["reason"] == "SecretNotFound"
    assert "spec.agent.model.apiKeySecretRef" in condition["message"]
    assert h.get(k8s_cluster, "deployment", AGENT, namespace) is None  # nothing rolled out
    events = h.items(
        k8s_cluster, "events", namespace,
        f"--field-selector=involvedObject.name={AGENT},reason=SecretNotFound",
    )  # fmt: skip
    assert events
    assert events[0]["type"] == "Warning"
    assert "llm-key" in events[0]["message"]

    h.apply(k8s_cluster, namespace, _secret("llm-key", other="x"))
    h.wait_for_agent(
        k8s_cluster, namespace, AGENT, _stalled_with("has no key api-key"), what="no key"
    )

    h.apply(k8s_cluster, namespace, _secret("llm-key", other="x", **{"api-key": "sk-test"}))
    ready = h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")
    assert h.condition(ready, "Stalled")["status"] == "False"
