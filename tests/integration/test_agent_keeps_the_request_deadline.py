"""The request's deadline propagates into every call: a slow or hanging model is cut off at the
time left (not at its own longer timeout), no retry or fallback model starts after the deadline,
and the user gets the rule-based answer. A model's answer given in time is never thrown away
because the session write after it is slow."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
import redis.asyncio as aioredis
from agent_support import agent_config

from pilothouse.runtime import agent, config, devservers, requests, sessions
from pilothouse.runtime.mockllm.process import MockLLMProcess
from pilothouse.runtime.policies import engine

pytestmark = pytest.mark.integration


RULES = config.FallbackConfig(
    response="Please try again later.",
    rules=(config.FallbackRule(pattern=r"\d\s*\+\s*\d", response="Our calculator is resting."),),
)


async def test_a_hanging_model_is_cut_at_the_request_deadline(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(hang_rate=1.0)
    model_timeout, request_timeout = 20.0, 0.6
    cfg = agent_config(
        unique_name,
        llm.url,
        models=("mock-llm", "mock-llm-fallback"),
        model_timeout=model_timeout,
        fallback=RULES,
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(
            requests.AgentRequest(input="What is 2+2?", timeout_seconds=request_timeout)
        )
    result = outcome.result
    assert result.status is requests.ResultStatus.FALLBACK
    assert result.answer == "Our calculator is resting."
    assert result.fallback_reason == "timeout"
    calls = [d for d in outcome.decisions if d.action == "llm_call"]
    assert [(c.model, c.outcome) for c in calls] == [
        ("mock-llm", "error"),
        ("mock-llm-fallback", "error"),
    ]
    # Cut to the time left of the request, not the model's own 20 s.
    cut = re.search(r"no answer within ([\d.]+)s", calls[0].error or "")
    assert cut is not None
    assert 0 < float(cut.group(1)) <= request_timeout
    assert calls[0].action_params["next"] == "not retried: deadline"
    assert "deadline has passed" in (calls[1].error or "")
    assert llm.admin.stats()["total"] == 1  # nothing started after the deadline
    fallback = outcome.decisions[-1]
    assert (fallback.action, fallback.outcome, fallback.action_params) == (
        "fallback",
        "fallback",
        {"rule": 0},
    )


async def test_a_model_slower_than_its_timeout_is_retried_then_replaced(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(latency_ms=1_000, models=["mock-llm"])
    cfg = agent_config(
        unique_name,
        llm.url,
        models=("mock-llm", "mock-llm-fallback"),
        attempts=2,
        model_timeout=0.2,
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What is 2+2?"))
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert result.model == "mock-llm-fallback"
    assert result.fallback_reason == "timeout"
    calls = [(d.model, d.outcome) for d in outcome.decisions if d.action == "llm_call"]
    assert calls == [("mock-llm", "error"), ("mock-llm", "error"), ("mock-llm-fallback", "ok")]


# Keeps Redis busy (every other client waits) for ARGV[1] microseconds.
BUSY_SCRIPT = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) >= tonumber(ARGV[1])
return 1
"""


async def answer_while_redis_is_busy(
    a: agent.Agent, request: requests.AgentRequest, llm: MockLLMProcess, redis_url: str
) -> agent.AgentOutcome:
    """Answer ``request``, keeping Redis busy for 3 s from the moment the model is asked."""
    busy = aioredis.Redis.from_url(redis_url)
    try:
        answering = asyncio.create_task(a.handle(request))
        deadline = time.monotonic() + 10
        while llm.admin.stats()["total"] < 1:  # the checks before the call are done
            assert time.monotonic() < deadline, "the request never reached the model"
            await asyncio.sleep(0.01)
        blocking = asyncio.create_task(busy.eval(BUSY_SCRIPT, 0, 3_000_000))
        outcome = await answering
        await blocking
    finally:
        await busy.aclose()
    return outcome


async def test_an_answer_in_time_is_kept_when_the_session_write_is_slow(
    llm: MockLLMProcess, redis_server: devservers.RedisServer, unique_name: str
) -> None:
    # The model answers after ~1 s of a 2 s request; meanwhile Redis (this test's own server)
    # is kept busy for 3 s, so the session write after the answer cannot finish in time.
    llm.admin.set_faults(latency_ms=1_000)
    cfg = agent_config(unique_name, llm.url)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with agent.build_agent(cfg, redis=client) as a:
            # A session store that would wait longer than the request has left.
            a.sessions = sessions.SessionStore(
                client, cfg.sessions, key_prefix="t", namespace="n", agent=unique_name, timeout=10
            )
            request = requests.AgentRequest(
                input="What is 2+2?", session_id=f"s-{unique_name}", timeout_seconds=2.0
            )
            outcome = await answer_while_redis_is_busy(a, request, llm, redis_server.url)
    finally:
        await client.aclose()
    assert outcome.result.status is requests.ResultStatus.COMPLETED, outcome.decisions
    assert "4" in outcome.result.answer
    actions = [(d.action, d.outcome) for d in outcome.decisions]
    assert ("answer", "ok") in actions
    assert ("session_save", "error") in actions
    assert "fallback" not in {d.action for d in outcome.decisions}


async def test_an_answer_in_time_is_kept_when_settling_its_cost_is_slow(
    llm: MockLLMProcess, redis_server: devservers.RedisServer, unique_name: str
) -> None:
    llm.admin.set_faults(latency_ms=1_000)
    budget = config.ResolvedPolicy.model_validate(
        {"name": "budget", "costLimit": {"maxUsdPerHour": 10.0}}
    )
    cfg = agent_config(unique_name, llm.url, policies=(budget,))
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        # A policy engine that would wait for Redis longer than the request has left.
        hook = engine.PolicyEngine(cfg, client, redis_timeout=10)
        async with agent.build_agent(cfg, redis=client, policy_hook=hook) as a:
            request = requests.AgentRequest(input="What is 2+2?", timeout_seconds=2.0)
            outcome = await answer_while_redis_is_busy(a, request, llm, redis_server.url)
    finally:
        await client.aclose()
    assert outcome.result.status is requests.ResultStatus.COMPLETED, outcome.decisions
    assert "4" in outcome.result.answer
    assert outcome.result.cost_usd > 0
    assert [d.action for d in outcome.decisions][-1] == "answer"
