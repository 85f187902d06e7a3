"""The request's deadline propagates into every call: a slow or hanging model is cut off at the
time left (not at its own longer timeout), no retry or fallback model starts after the deadline,
and the user gets the rule-based answer."""

from __future__ import annotations

import re
import time

import pytest
import redis.asyncio as aioredis
from agent_support import agent_config

from pilothouse.runtime import agent, config, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

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
        started = time.monotonic()
        outcome = await a.handle(
            requests.AgentRequest(input="What is 2+2?", timeout_seconds=request_timeout)
        )
        elapsed = time.monotonic() - started
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
    assert elapsed < model_timeout / 2


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
