"""Request ids are chosen by callers, unique per agent only: two agents answering a request
with the same id each keep their decisions, their summary and their escalation in the shared
audit database, and each chain verifies. Neither is taken for a duplicate of the other."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from audit_support import decisions, open_store, start_writer

from pilothouse.runtime import config, escalations, hooks, llm, pending, requests, retries, steps
from pilothouse.runtime.audit import verification

pytestmark = pytest.mark.integration

AGENTS = ("triage", "support")
REQUEST = requests.AgentRequest(request_id="msg-123", input="refund my order")


def escalated(agent: str) -> pending.PendingAction:
    """What the agent loop of ``agent`` parks when REQUEST's refund call escalates at step 1."""
    cfg = config.RuntimeConfig(
        agent=agent, model=config.ModelConfig(endpoint="http://llm.invalid/v1", name="m")
    )
    run = steps.Run(cfg, REQUEST, retries.Deadline.within(30, time), time)
    run.record("request")
    action = hooks.Action(
        kind=hooks.ActionKind.TOOL_CALL,
        agent_id=agent,
        request_id=REQUEST.request_id,
        step=run.step,
        tool_name="refund",
    )
    verdict = hooks.PolicyResult(hooks.Verdict.ESCALATE, policy="refunds", reason="a human")
    return run.pending_action(action, verdict, [llm.ToolCall("c1", "refund", "{}")])


async def test_two_agents_with_the_same_request_id_both_keep_their_audit_trail(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    s = await open_store(postgres_dsn, unique_name)
    try:
        w = await start_writer(s, tmp_path)
        try:
            for agent in AGENTS:
                result = requests.AgentResult(
                    request_id=REQUEST.request_id, agent_id=agent, status="completed", answer=agent
                )
                await w.submit_result(REQUEST, result, decisions(agent, REQUEST.request_id, 3))
        finally:
            await w.close()

        for agent in AGENTS:
            found = await s.decisions_for_request(REQUEST.request_id, agent)
            assert [(r.row.agent_id, r.row.step) for r in found] == [(agent, n) for n in range(3)]
        both = await s.decisions_for_request(REQUEST.request_id)
        assert [r.row.agent_id for r in both] == ["support"] * 3 + ["triage"] * 3
        summaries = await s.requests_for(REQUEST.request_id)
        assert sorted((r.agent_id, r.answer) for r in summaries) == [
            ("support", "support"),
            ("triage", "triage"),
        ]
        reports = await verification.verify(s)
        assert sorted((r.agent, r.verified, r.problem) for r in reports) == [
            ("support", 3, None),
            ("triage", 3, None),
        ]

        service = escalations.EscalationService(s)
        parked = [
            await service.park(escalated(agent), REQUEST, timeout_seconds=60) for agent in AGENTS
        ]
        assert [(e.agent_id, e.request_id, e.step) for e in parked] == [
            (agent, REQUEST.request_id, 1) for agent in AGENTS
        ]
        assert parked[0].id != parked[1].id
        assert {e.id for e in await service.list(status="pending")} == {e.id for e in parked}
    finally:
        await s.close()
