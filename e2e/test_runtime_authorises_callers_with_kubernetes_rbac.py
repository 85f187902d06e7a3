"""Kubernetes-native authentication of an agent's API, on the real API server: the operator runs
an agent (kubernetes authentication is the default) and binds its ServiceAccount to
``system:auth-delegator``; the runtime, run here from the config the operator rendered as a
kubelet would run it (the ServiceAccount's token and the cluster CA in files, the API server's
address), checks each caller's token with a TokenReview and each call with a
SubjectAccessReview. So plain RBAC decides: a ServiceAccount without the RoleBinding gets 403 on
approve and 202 once bound, a forged token 401, the requester cannot approve its own
escalation, and the approver recorded is the ServiceAccount's username. Deleting the agent
deletes its binding.

KWOK runs no containers, so the runtime is a local ``pilothouse serve`` with real Redis,
PostgreSQL and the mock LLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import chart_operator
import httpx
import operator_harness as h
import pytest
import yaml
from cluster.launcher import Cluster
from polling import wait_until

from pilothouse.operator import manifests
from pilothouse.runtime import devservers, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

AGENT = "support"
RBAC = "rbac.authorization.k8s.io/v1"
AUDIT_SCHEMA = "pilothouse"


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str, str]]:
    """Redis URL, PostgreSQL DSN and the mock LLM's URL."""
    with (
        devservers.RedisServer() as redis_server,
        devservers.PostgresServer() as postgres,
        MockLLMProcess(seed=3) as llm,
    ):
        redis_server.start()
        postgres.start()
        yield redis_server.url, postgres.dsn, llm.url


def _binding(name: str, role: str, *accounts: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": a, "namespace": namespace} for a in accounts
        ],
    }


def _runtime_config(cluster: Cluster, namespace: str, workdir: Path) -> dict[str, Any]:
    """The rendered config, as the pod would see it: its ServiceAccount token and the cluster CA
    mounted as files, the API server at its address (what a kubelet and a Service provide)."""
    configmap = h.get(cluster, "configmap", f"{AGENT}-runtime", namespace)
    assert configmap is not None
    cfg: dict[str, Any] = yaml.safe_load(configmap["data"]["runtime.yaml"])
    assert cfg["server"]["kubernetesAuth"] == {"enabled": True}
    server, ca = chart_operator.api_server(cluster, workdir)
    token = workdir / "token"
    token.write_text(chart_operator.service_account_token(cluster, namespace, AGENT))
    cfg["server"]["kubernetesAuth"].update(
        {"apiServer": server, "tokenFile": str(token), "caFile": str(ca)}
    )
    cfg["audit"] = {"enabled": True, "flushIntervalSeconds": 2}
    return cfg


def _decided_by(dsn: str, escalation_id: str) -> tuple[str, str]:
    async def read() -> tuple[str, str]:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": AUDIT_SCHEMA})
        try:
            row = await conn.fetchrow(
                "SELECT status, decided_by FROM audit_escalations WHERE id = $1", escalation_id
            )
        finally:
            await conn.close()
        assert row is not None
        return row["status"], row["decided_by"]

    return asyncio.run(read())


def test_rbac_decides_who_sends_and_who_approves(
    k8s_cluster: Cluster,
    namespace: str,
    services: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    redis_url, dsn, llm_url = services
    ns = namespace
    pricey = {"escalation": {"whenEstimatedCostAboveUsd": 0.001}}
    agent = h.small_agent(
        AGENT,
        agent={
            "systemPrompt": "You help.",
            "model": {
                "endpoint": llm_url,
                "name": "mock-llm",
                "pricing": {"inputPerMillionTokens": 1000, "outputPerMillionTokens": 1000},
            },
        },
        policyRefs=[{"name": "big-spend"}],
    )
    for account in ("chat", "lead", "approver"):
        k8s_cluster.kubectl("create", "serviceaccount", account, "-n", ns)
    h.apply(k8s_cluster, ns, h.policy_manifest("big-spend", pricey), agent)
    # The Roles as the chart's README writes them.
    k8s_cluster.kubectl(
        "-n", ns, "create", "role", "submitters", "--verb=create",
        "--resource=agentdeployments.pilothouse.dev/requests", f"--resource-name={AGENT}",
    )  # fmt: skip
    k8s_cluster.kubectl(
        "-n", ns, "create", "role", "approvers", "--verb=update,get",
        "--resource=agentdeployments.pilothouse.dev/approvals",
        "--resource=agentdeployments.pilothouse.dev/history", f"--resource-name={AGENT}",
    )  # fmt: skip
    h.apply(
        k8s_cluster,
        ns,
        _binding("submit", "submitters", "chat", "lead", namespace=ns),
        _binding("approve-lead", "approvers", "lead", namespace=ns),
    )
    binding_name = manifests.review_binding_name(ns, AGENT)
    binding = wait_until(
        lambda: h.get(k8s_cluster, "clusterrolebinding", binding_name, ns),
        bool,
        what="the operator to bind the agent's ServiceAccount for reviews",
    )
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": AGENT, "namespace": ns}]
    wait_until(
        lambda: h.get(k8s_cluster, "configmap", f"{AGENT}-runtime", ns),
        bool,
        what="the rendered config",
    )

    cfg = _runtime_config(k8s_cluster, ns, tmp_path)
    env = {"PILOTHOUSE_REDIS_URL": redis_url, "PILOTHOUSE_POSTGRES_DSN": dsn}

    def token(account: str) -> dict[str, str]:
        value = chart_operator.service_account_token(k8s_cluster, ns, account)
        return {"authorization": f"Bearer {value}"}

    chat, lead, approver = token("chat"), token("lead"), token("approver")
    with (
        testing.RuntimeProcess(cfg, env=env, workdir=tmp_path / "runtime") as rt,
        httpx.Client(base_url=rt.url, timeout=30) as c,
    ):
        assert c.get("/readyz").json()["authentication"] == "kubernetes"
        body = {"input": "What is 2+2?"}
        forged = c.post(
            "/v1/requests",
            json=body,
            headers={"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.forged"},
        )
        assert forged.status_code == 401
        assert c.post("/v1/requests", json=body).status_code == 401
        assert c.post("/v1/requests", json=body, headers=approver).status_code == 403

        # lead sends a request whose LLM call is estimated above the policy's threshold.
        r = c.post("/v1/requests", params={"wait": 20}, json=body, headers=lead)
        assert r.status_code == 200, r.text
        escalated = r.json()
        assert escalated["status"] == "escalated", escalated
        assert escalated["caller"] == f"system:serviceaccount:{ns}:lead"
        eid = escalated["escalation_id"]

        assert c.get("/v1/escalations", headers=chat).status_code == 403
        own = c.post(f"/v1/escalations/{eid}/approve", headers=lead)
        assert own.status_code == 403
        assert "cannot decide its escalation" in own.json()["message"]
        refused = c.post(f"/v1/escalations/{eid}/approve", headers=approver)
        assert refused.status_code == 403
        assert refused.json()["message"] == (
            f"system:serviceaccount:{ns}:approver may not list, approve or deny escalations "
            "of this agent"
        )

        h.apply(
            k8s_cluster, ns, _binding("approve-approver", "approvers", "approver", namespace=ns)
        )
        # A refusal is remembered for deniedCacheSeconds: the binding takes effect after it.
        approved = wait_until(
            lambda: c.post(f"/v1/escalations/{eid}/approve", headers=approver),
            lambda resp: resp.status_code != 403,
            what="the new RoleBinding to let the approver approve",
        )
        assert approved.status_code == 202, approved.text
        assert _decided_by(dsn, eid) == ("approved", f"system:serviceaccount:{ns}:approver")
        final = wait_until(
            lambda: c.get(f"/v1/requests/{escalated['request_id']}", headers=lead).json(),
            lambda doc: doc.get("result", {}).get("status") not in (None, "escalated"),
            what="the resumed request's answer",
        )
        assert final["result"]["status"] == "completed", final
        # chat may send requests but not read others' (no get on agentdeployments/history).
        assert c.get(f"/v1/requests/{escalated['request_id']}", headers=chat).status_code == 404

    k8s_cluster.kubectl("delete", "agd", AGENT, "-n", ns)
    wait_until(
        lambda: h.get(k8s_cluster, "clusterrolebinding", binding_name, ns),
        lambda found: found is None,
        what="the review binding deleted with the agent",
    )
