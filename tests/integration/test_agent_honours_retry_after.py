"""429 answers: a Retry-After within bounds is waited out once and the call then succeeds; one
past the request's deadline (or above maxBackoffSeconds) is not waited: the request moves on to
the next model or the rule-based fallback at once. Never a recursion, never an unbounded sleep."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from agent_support import agent_config

from pilothouse.runtime import agent, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


async def clear_faults_after_first_call(llm: MockLLMProcess) -> None:
    """Let exactly one call be rate limited: clear the faults as soon as the mock saw it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (await asyncio.to_thread(llm.admin.stats))["total"] >= 1:
            await asyncio.to_thread(llm.admin.clear_faults)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the mock never received the first call")


async def test_retry_after_one_second_is_waited_once_then_succeeds(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(rate_limit_rate=1.0, retry_after=1)
    cfg = agent_config(unique_name, llm.url, attempts=3, initial_backoff=0.01, max_backoff=2.0)
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome, _ = await asyncio.gather(
            a.handle(requests.AgentRequest(input="What is 2+2?")),
            clear_faults_after_first_call(llm),
        )
    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert "4" in outcome.result.answer
    calls = [d for d in outcome.decisions if d.action == "llm_call"]
    assert [c.outcome for c in calls] == ["error", "ok"]
    assert "HTTP 429" in (calls[0].error or "")
    assert "Retry-After 1s" in (calls[0].error or "")
    assert calls[0].action_params["next"] == "retry in 1.000s"
    # The retry went out no earlier than the server asked.
    assert (calls[1].timestamp - calls[0].timestamp).total_seconds() >= 1.0
    assert llm.admin.stats()["total"] == 2


async def test_retry_after_past_the_deadline_fails_fast_to_the_fallback(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    retry_after = 5
    llm.admin.set_faults(rate_limit_rate=1.0, retry_after=retry_after)
    cfg = agent_config(unique_name, llm.url, attempts=3, max_backoff=60.0, request_timeout=2.0)
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What is 2+2?"))
    assert outcome.result.status is requests.ResultStatus.FALLBACK
    assert outcome.result.fallback_reason == "rate_limited"
    assert outcome.result.answer == cfg.fallback.response
    calls = [d for d in outcome.decisions if d.action == "llm_call"]
    assert len(calls) == 1
    assert calls[0].action_params["next"] == "not retried: deadline"
    assert llm.admin.stats()["total"] == 1
    # Gave up at once (the decision above says why) and went straight to the rule fallback.
    assert [d.action for d in outcome.decisions][-2:] == ["llm_call", "fallback"]


async def test_retry_after_above_max_backoff_moves_on_to_the_fallback_model(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(rate_limit_rate=1.0, retry_after=30, models=["mock-llm"])
    cfg = agent_config(
        unique_name, llm.url, models=("mock-llm", "mock-llm-fallback"), max_backoff=1.0
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What is 2+2?"))
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert result.model == "mock-llm-fallback"
    assert result.fallback_used
    assert result.fallback_reason == "rate_limited"
    calls = [d for d in outcome.decisions if d.action == "llm_call"]
    assert [(c.model, c.outcome) for c in calls] == [
        ("mock-llm", "error"),
        ("mock-llm-fallback", "ok"),
    ]
    assert calls[0].action_params["next"] == "not retried: retry_after_too_long"
    assert llm.admin.stats()["by_model"] == {"mock-llm": 1, "mock-llm-fallback": 1}
