"""Who may do what, through real ``pilothouse serve`` processes with a token file (real Redis,
PostgreSQL and the mock LLM): each role may do exactly its calls; a submitter reads only its own
results; an end user is named only with the delegate role, and per-user rate limits key on the
authenticated identity otherwise; the approver is the authenticated caller (recorded in the audit
trail), never the requester; of two approvers on two replicas at once exactly one wins; a
rotated token file takes effect without a restart."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import AUDIT_SCHEMA, await_for, runtime_config, runtime_env, wait_for

from pilothouse.runtime import testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

TOKENS = """\
# token        identity  roles
tok-chat       chat-ui   delegate
tok-ci         ci        submit
tok-alice      alice     approve
tok-bob        bob       approve,read
tok-carol      carol     submit,approve
tok-auditor    auditor   read
tok-batch      batch     submit
"""


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Agent:
    def __init__(self, primary: testing.RuntimeProcess, replica: testing.RuntimeProcess) -> None:
        self.primary = primary
        self.replica = replica
        self.tokens_file = primary.workdir.parent / "tokens"

    def client(self, token: str, *, replica: bool = False) -> httpx.Client:
        url = (self.replica if replica else self.primary).url
        return httpx.Client(base_url=url, timeout=30, headers=_auth(token))


@pytest.fixture(scope="module")
def agent(
    redis_url: str,
    postgres_dsn: str,
    module_tool_server: ToolServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Agent]:
    folder: Path = tmp_path_factory.mktemp("governance")
    tokens = folder / "tokens"
    tokens.write_text(TOKENS)
    tools = [
        t.model_dump(mode="json", by_alias=True) for t in standard_tools(module_tool_server.url)
    ]
    policies = [
        {"name": "refunds", "escalation": {"tools": ["initiate_return"]}},
        {"name": "per-user", "rateLimit": {"requestsPerMinute": 1, "burst": 3, "per": "user"}},
    ]
    env = runtime_env(redis_url, postgres_dsn)
    with MockLLMProcess(seed=9) as llm:
        cfg = runtime_config(
            f"gov-{uuid.uuid4().hex[:8]}",
            llm.url,
            tools=tools,
            policies=policies,
            server={"authTokensFile": str(tokens)},
        )
        with (
            testing.RuntimeProcess(cfg, env=env, workdir=folder / "primary") as primary,
            testing.RuntimeProcess(cfg, role="api", env=env, workdir=folder / "replica") as replica,
        ):
            yield Agent(primary, replica)


def _escalate(c: httpx.Client, *, user: str | None = None) -> dict[str, Any]:
    """A three-turn return conversation whose last step waits for approval."""
    session = f"s-{uuid.uuid4().hex[:10]}"
    extra = {"user": user} if user else {}
    for text in ("I want to return my order", "The order number is 12345"):
        r = c.post(
            "/v1/requests",
            params={"wait": 10},
            json={"input": text, "session_id": session, **extra},
        )
        assert r.status_code == 200, r.text
    r = c.post(
        "/v1/requests",
        params={"wait": 10},
        json={"input": "Yes, that's correct", "session_id": session, **extra},
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    assert result["status"] == "escalated", result
    return result


def _audited(dsn: str, request_id: str) -> list[asyncpg.Record]:
    """The audit summary rows of a request (waiting for the first)."""
    return asyncio.run(_audit_rows(dsn, request_id))


def _escalation_row(dsn: str, escalation_id: str) -> asyncpg.Record:
    return asyncio.run(_read_escalation(dsn, escalation_id))


def _final(c: httpx.Client, request_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        r = c.get(f"/v1/requests/{request_id}")
        if r.status_code != 200 or r.json().get("state") != "done":
            return None
        result: dict[str, Any] = r.json()["result"]
        return result if result["status"] != "escalated" else None

    return wait_for(done, timeout=20, what=f"the final answer of {request_id}")


async def _audit_rows(dsn: str, request_id: str) -> list[asyncpg.Record]:
    async def rows() -> list[asyncpg.Record] | None:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": AUDIT_SCHEMA})
        try:
            found = await conn.fetch(
                "SELECT caller, user_id, attempt FROM audit_requests WHERE request_id = $1 "
                "ORDER BY attempt",
                request_id,
            )
        finally:
            await conn.close()
        return list(found) or None

    return await await_for(rows, within=20, what=f"the audit row of {request_id}")


async def _read_escalation(dsn: str, escalation_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": AUDIT_SCHEMA})
    try:
        row = await conn.fetchrow(
            "SELECT status, decided_by FROM audit_escalations WHERE id = $1", escalation_id
        )
    finally:
        await conn.close()
    assert row is not None
    return row


def test_each_role_may_do_exactly_its_calls(agent: Agent, postgres_dsn: str) -> None:
    body = {"input": "What is 2+2?"}
    with (
        agent.client("tok-ci") as ci,
        agent.client("tok-alice") as alice,
        agent.client("tok-auditor") as auditor,
        agent.client("tok-chat") as chat,
    ):
        assert alice.post("/v1/requests", json=body).status_code == 403
        assert alice.post("/agent/process", json=body).status_code == 403
        refused = auditor.post("/v1/requests", json=body)
        assert refused.status_code == 403
        assert refused.json() == {
            "error": "forbidden",
            "message": "auditor may not send requests to this agent",
        }
        assert ci.get("/v1/escalations").status_code == 403
        assert auditor.get("/v1/escalations").status_code == 403
        assert alice.get("/v1/escalations").status_code == 200

        r = ci.post("/v1/requests", params={"wait": 10}, json=body)
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]
        assert r.json()["caller"] == "ci"
        # The submitter and readers see it; another submitter and an approver do not.
        assert ci.get(f"/v1/requests/{rid}").json()["result"]["answer"] == r.json()["answer"]
        assert auditor.get(f"/v1/requests/{rid}").status_code == 200
        assert chat.get(f"/v1/requests/{rid}").status_code == 404
        assert alice.get(f"/v1/requests/{rid}").status_code == 403
        # Nor can another caller learn the answer by sending the same request id again.
        again = chat.post("/v1/requests", json={**body, "request_id": rid})
        assert again.status_code == 409
        assert "taken by another caller" in again.json()["message"]

        _audited(postgres_dsn, rid)
        assert ci.get(f"/v1/requests/{rid}/decisions").status_code == 200
        assert len(auditor.get(f"/v1/requests/{rid}/decisions").json()["decisions"]) >= 1
        assert chat.get(f"/v1/requests/{rid}/decisions").status_code == 404
    with httpx.Client(base_url=agent.primary.url) as anonymous:
        assert anonymous.post("/v1/requests", json=body).status_code == 401
        assert anonymous.get("/readyz").json()["authentication"] == "tokens"


def test_end_users_only_with_the_delegate_role_and_limits_key_on_identity(
    agent: Agent, postgres_dsn: str
) -> None:
    with agent.client("tok-batch") as ci, agent.client("tok-chat") as chat:
        dodge = ci.post("/v1/requests", json={"input": "hi", "user": "someone-else"})
        assert dodge.status_code == 403
        assert "delegate" in dodge.json()["message"]
        assert ci.post("/v1/requests", json={"input": "hi", "user": "batch"}).status_code == 202

        # The chat front end acts for end users: recorded beside it, each with a budget.
        r = chat.post("/v1/requests", params={"wait": 10}, json={"input": "hi", "user": "u-42"})
        assert r.status_code == 200, r.text
        [row] = _audited(postgres_dsn, r.json()["request_id"])
        assert (row["caller"], row["user_id"]) == ("chat-ui", "u-42")

        # batch's requests count against batch whatever it sends: of burst + 1 = 4 at once,
        # one was taken above; the fifth within the minute is refused.
        answers = [
            ci.post("/v1/requests", params={"wait": 10}, json={"input": "What is 2+2?"}).json()
            for _ in range(4)
        ]
        assert [a["refused"] for a in answers] == [False, False, False, True]
        assert answers[3]["policy"] == "per-user"
        [row] = _audited(postgres_dsn, answers[0]["request_id"])
        assert (row["caller"], row["user_id"]) == ("batch", "batch")
        # Another end user of the chat front end still has its own budget.
        other = chat.post(
            "/v1/requests", params={"wait": 10}, json={"input": "What is 2+2?", "user": "u-43"}
        )
        assert other.json()["refused"] is False


def test_four_eyes_the_requester_cannot_approve_and_the_approver_is_audited(
    agent: Agent, postgres_dsn: str, module_tool_server: ToolServer
) -> None:
    with agent.client("tok-carol") as carol, agent.client("tok-alice") as alice:
        escalated = _escalate(carol)
        eid = escalated["escalation_id"]
        assert eid in [
            e["escalation_id"] for e in alice.get("/v1/escalations").json()["escalations"]
        ]

        own = carol.post(f"/v1/escalations/{eid}/approve", json={"note": "trust me"})
        assert own.status_code == 403
        assert "carol sent request" in own.json()["message"]
        assert carol.post(f"/v1/escalations/{eid}/deny").status_code == 403
        named = alice.post(f"/v1/escalations/{eid}/approve", json={"by": "the-ceo"})
        assert named.status_code == 422  # the approver is who authenticates, never a body field
        assert (_escalation_row(postgres_dsn, eid))["status"] == "pending"

        returns_before = sum(r.path == "/returns" for r in module_tool_server.received)
        ok = alice.post(f"/v1/escalations/{eid}/approve", json={"note": "receipt checked"})
        assert ok.status_code == 202, ok.text
        final = _final(carol, escalated["request_id"])
        assert final["status"] == "completed"
        row = _escalation_row(postgres_dsn, eid)
        assert (row["status"], row["decided_by"]) == ("approved", "alice")
        # The same decision again by the same approver is answered as the first time, and the
        # request is not run twice.
        assert alice.post(f"/v1/escalations/{eid}/approve").status_code == 202
        assert sum(r.path == "/returns" for r in module_tool_server.received) == returns_before + 1
        audited = _audited(postgres_dsn, escalated["request_id"])
        assert {(r["caller"], r["attempt"]) for r in audited} >= {("carol", ""), ("carol", eid)}


def test_two_approvers_on_two_replicas_at_once_one_wins(agent: Agent) -> None:
    with agent.client("tok-ci") as ci:
        escalated = _escalate(ci)
    eid = escalated["escalation_id"]
    start = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}

    def decide(name: str, token: str, action: str, replica: bool) -> None:
        with agent.client(token, replica=replica) as c:
            start.wait()
            answers[name] = c.post(f"/v1/escalations/{eid}/{action}", json={})

    threads = [
        threading.Thread(target=decide, args=("alice", "tok-alice", "approve", False)),
        threading.Thread(target=decide, args=("bob", "tok-bob", "deny", True)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers.values())
    assert codes in ([200, 409], [202, 409]), {k: v.text for k, v in answers.items()}
    winner = "alice" if answers["alice"].status_code == 202 else "bob"
    loser = answers["bob" if winner == "alice" else "alice"]
    assert f"by {winner}" in loser.json()["message"]
    with agent.client("tok-bob") as bob:
        final = _final(bob, escalated["request_id"])
    assert final["status"] == ("completed" if winner == "alice" else "refused")


def test_a_rotated_token_file_takes_effect_without_a_restart(agent: Agent) -> None:
    with agent.client("tok-dave") as dave:
        assert dave.get("/v1/escalations").status_code == 401
        agent.tokens_file.write_text(TOKENS + "tok-dave dave approve\n")
        wait_for(
            lambda: dave.get("/v1/escalations").status_code == 200,
            timeout=20,
            what="the new token to be accepted",
        )
    with agent.client("tok-dave", replica=True) as dave:
        wait_for(
            lambda: dave.get("/v1/escalations").status_code == 200,
            timeout=20,
            what="the new token to be accepted by the other replica",
        )
