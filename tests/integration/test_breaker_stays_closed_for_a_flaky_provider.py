"""A provider that fails 30 % of calls with 5xx is degraded, not down: with the breaker's
default settings (a failure rate over a sliding window, minimum calls) and 3 attempts, the
breaker stays closed for everyone and at least 97 % of requests are answered by the model
(1 - 0.3³ = 97.3 % expected). A breaker that counted failures ("5 in 60 s") opened within
moments and sent most requests to the rule-based fallback. Real Redis (the shared breaker), the
mock LLM over HTTP with seeded faults (requests one after the other, so the faults each
request meets are the same on every run); and a provider that is down still opens it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from agent_support import agent_config

from pilothouse.runtime import agent, breaker, config, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

REQUESTS = 1500
DEFAULTS = config.CircuitBreakerConfig()


async def test_thirty_percent_transient_errors_leave_the_breaker_closed_and_97_percent_answered(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.reset(faults=True, seed=11)
    llm.admin.set_faults(error_rate=0.3, error_status=503)
    cfg = agent_config(
        unique_name,
        llm.url,
        attempts=3,
        failure_threshold=DEFAULTS.failure_threshold,
        minimum_calls=DEFAULTS.minimum_calls,
        window=DEFAULTS.window_seconds,
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcomes = [
            await a.handle(requests.AgentRequest(input=f"What is {i}+1?")) for i in range(REQUESTS)
        ]
        final = await a.chain.breakers.state(cfg.model.key)
    stats = llm.admin.stats()

    by_model = [
        o
        for o in outcomes
        if o.result.status is requests.ResultStatus.COMPLETED and not o.result.fallback_used
    ]
    assert len(by_model) >= 0.97 * REQUESTS, len(by_model)
    # Every other request fell back because all of its 3 attempts failed, none for the breaker.
    for o in outcomes:
        if o not in by_model:
            tries = [d for d in o.decisions if d.action == "llm_call"]
            assert [(d.outcome, d.action_params["attempt"]) for d in tries] == [
                ("error", 1),
                ("error", 2),
                ("error", 3),
            ]
            assert all("HTTP 503" in (d.error or "") for d in tries)
    # Retries did it: about 30 % of the calls failed, and no call was refused by the breaker.
    assert stats["by_outcome"].get("error", 0) > 0.25 * stats["total"]
    attempts = [d for o in outcomes for d in o.decisions if d.action == "llm_call"]
    assert len(attempts) == stats["total"]
    assert not [d for d in attempts if "circuit breaker open" in (d.error or "")]
    assert final.state is breaker.State.CLOSED
    calls = sum(b[1] for b in final.window)
    failures = sum(b[2] for b in final.window)
    assert calls == stats["total"]  # every attempt counted in the shared window
    assert 0.2 * calls < failures < 0.5 * calls


async def test_a_provider_that_is_down_still_opens_it_after_the_minimum_calls(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(error_rate=1.0, error_status=503)
    cfg = agent_config(
        unique_name,
        llm.url,
        attempts=3,
        failure_threshold=DEFAULTS.failure_threshold,
        minimum_calls=DEFAULTS.minimum_calls,
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcomes = [
            await a.handle(requests.AgentRequest(input=f"What is {i}+1?")) for i in range(12)
        ]
        final = await a.chain.breakers.state(cfg.model.key)
    stats = llm.admin.stats()
    # Calls stop at the minimum number of calls: then the rate (100 %) opens the breaker.
    assert stats["total"] == DEFAULTS.minimum_calls
    assert final.state is breaker.State.OPEN
    assert all(o.result.status is requests.ResultStatus.FALLBACK for o in outcomes)
