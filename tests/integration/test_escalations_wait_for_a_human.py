"""Escalations end to end: the real policy engine escalates the return tool in the agent loop,
the escalation service parks it in PostgreSQL; approved, the request resumes and completes
(the tool runs); denied, it ends with a clear answer (the tool never runs); past its deadline
it is reported as expired. Decisions are atomic and happen once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from agent_support import ShiftedClock, ToolServer, agent_config, standard_tools
from audit_support import open_store

from pilothouse.runtime import agent, config, escalations, requests
from pilothouse.runtime.audit import store
from pilothouse.runtime.mockllm.process import MockLLMProcess
from pilothouse.runtime.policies import engine

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit_store(postgres_dsn: str, unique_name: str) -> AsyncIterator[store.AuditStore]:
    s = await open_store(postgres_dsn, unique_name)
    yield s
    await s.close()


@pytest.fixture
def cfg(llm: MockLLMProcess, tool_server: ToolServer, unique_name: str) -> config.RuntimeConfig:
    return agent_config(
        unique_name,
        llm.url,
        tools=standard_tools(tool_server.url),
        policies=(
            config.ResolvedPolicy.model_validate(
                {
                    "name": "refunds",
                    "escalation": {"tools": ["initiate_return"], "timeoutSeconds": 600},
                }
            ),
        ),
    )


async def _escalate(
    cfg: config.RuntimeConfig,
    redis_client: aioredis.Redis,
    service: escalations.EscalationService,
    unique_name: str,
) -> str:
    """Run the three-turn return flow until the return tool is escalated, park it, and
    return its id."""
    policy = engine.PolicyEngine(cfg, redis_client)
    session = f"s-{unique_name}"
    async with agent.build_agent(cfg, redis=redis_client, policy_hook=policy) as a:
        for text in ("I want to return my order", "The order number is 12345"):
            await a.handle(requests.AgentRequest(input=text, session_id=session))
        request = requests.AgentRequest(input="Yes, that's correct", session_id=session)
        outcome = await a.handle(request)
    assert outcome.result.status is requests.ResultStatus.ESCALATED
    assert outcome.pending is not None
    parked = await service.park(
        outcome.pending, request, timeout_seconds=policy.escalation_timeout(outcome.pending.policy)
    )
    assert parked.status == "pending"
    assert (parked.tool, parked.params, parked.policy) == (
        "initiate_return",
        {"order_id": "12345"},
        "refunds",
    )
    assert parked.expires_at - parked.requested_at == timedelta(seconds=600)
    # Parking again (a redelivered request) keeps the one escalation.
    again = await service.park(outcome.pending, request, timeout_seconds=600)
    assert again.id == parked.id
    assert outcome.result.escalation_id == parked.id
    return parked.id


async def test_an_approved_tool_call_resumes_and_completes(
    cfg: config.RuntimeConfig,
    redis_client: aioredis.Redis,
    audit_store: store.AuditStore,
    tool_server: ToolServer,
    unique_name: str,
) -> None:
    service = escalations.EscalationService(audit_store)
    escalation_id = await _escalate(cfg, redis_client, service, unique_name)
    assert tool_server.received == []
    listed = await service.list(unique_name, "pending")
    assert [e.id for e in listed] == [escalation_id]

    approved = await service.approve(escalation_id, "alice", "customer verified")
    assert (approved.status, approved.decided_by) == ("approved", "alice")
    assert [e.id for e in await service.unsettled(unique_name)] == [approved.id]
    request, pending_action = await service.resumption(approved.id)
    assert request.approved_escalation == approved.id
    assert (await service.get_snapshot(approved.id)) == pending_action

    async with agent.build_agent(
        cfg, redis=redis_client, policy_hook=engine.PolicyEngine(cfg, redis_client)
    ) as other_replica:
        outcome = await other_replica.handle(request, resume=pending_action)
    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert [r.path for r in tool_server.received] == ["/returns"]
    assert await service.settle(approved.id)
    assert not await service.settle(approved.id)
    assert await service.unsettled(unique_name) == []

    with pytest.raises(escalations.EscalationNotPending, match="already approved by alice"):
        await service.deny(approved.id, "bob", "too late")


async def test_a_denied_tool_call_ends_with_a_clear_answer(
    cfg: config.RuntimeConfig,
    redis_client: aioredis.Redis,
    audit_store: store.AuditStore,
    tool_server: ToolServer,
    unique_name: str,
) -> None:
    service = escalations.EscalationService(audit_store)
    escalation_id = await _escalate(cfg, redis_client, service, unique_name)
    denied = await service.deny(escalation_id, "bob", "order is older than 30 days")
    assert denied.status == "denied"
    with pytest.raises(escalations.EscalationError, match="only approved ones resume"):
        await service.resumption(denied.id)
    _, result, decision = escalations.closing(denied, now=datetime.now(UTC))
    assert result.status is requests.ResultStatus.REFUSED
    assert result.refused
    assert result.answer == (
        "A reviewer declined the request to call the tool initiate_return, so it was not done: "
        "order is older than 30 days"
    )
    assert (decision.outcome, decision.policy) == ("denied", "refunds")
    assert tool_server.received == []


async def test_an_unanswered_escalation_expires_and_says_so(
    cfg: config.RuntimeConfig,
    redis_client: aioredis.Redis,
    audit_store: store.AuditStore,
    unique_name: str,
) -> None:
    clock = ShiftedClock()
    service = escalations.EscalationService(audit_store, clock=clock.time)
    escalation_id = await _escalate(cfg, redis_client, service, unique_name)
    clock.advance(601)
    with pytest.raises(escalations.EscalationExpired, match="expired at"):
        await service.approve(escalation_id, "alice")
    current = await service.get(escalation_id)
    assert current.status == "expired"
    assert current.decided_by is None
    _, result, decision = escalations.closing(current, now=datetime.now(UTC))
    assert result.status is requests.ResultStatus.FAILED
    assert "expired before anyone decided" in result.answer
    assert decision.outcome == "expired"


async def test_the_sweep_expires_overdue_escalations_only(
    cfg: config.RuntimeConfig,
    redis_client: aioredis.Redis,
    audit_store: store.AuditStore,
    unique_name: str,
) -> None:
    service = escalations.EscalationService(audit_store)
    escalation_id = await _escalate(cfg, redis_client, service, unique_name)
    assert await service.expire(datetime.now(UTC)) == []
    swept = await service.expire(datetime.now(UTC) + timedelta(seconds=601))
    assert [e.id for e in swept] == [escalation_id]
    assert [e.status for e in await service.list(unique_name)] == ["expired"]


async def test_unknown_ids_and_decided_rows_are_refused(
    audit_store: store.AuditStore, postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    service = escalations.EscalationService(audit_store)
    with pytest.raises(escalations.EscalationNotFound):
        await service.approve("esc-nope-1", "alice")
    with pytest.raises(escalations.EscalationError, match="status 'maybe'"):
        await service.list(status="maybe")
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": unique_name})
    try:
        await conn.execute(
            "INSERT INTO audit_escalations (id, request_id, step, agent_id, action, params,"
            " snapshot, status, requested_at, expires_at, decided_at, decided_by)"
            " VALUES ('e1', 'r1', 1, 'a', 'tool_call', '{}', '{}', 'denied',"
            " now(), now(), now(), 'x')"
        )
        with pytest.raises(asyncpg.RaiseError, match="only go from pending"):
            await conn.execute("UPDATE audit_escalations SET status = 'approved' WHERE id = 'e1'")
        with pytest.raises(asyncpg.RaiseError, match="retention job"):
            await conn.execute("DELETE FROM audit_escalations WHERE id = 'e1'")
    finally:
        await conn.close()
