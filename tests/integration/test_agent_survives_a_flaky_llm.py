"""With the mock LLM failing 30% of its calls with 5xx (seeded), retries and the fallback model
let at least 99% of 200 requests be answered by a model, and every retry is in the records."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from agent_support import agent_config
from prometheus_client import REGISTRY

from pilothouse.runtime import agent, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

REQUESTS = 200


def retries_total() -> float:
    return REGISTRY.get_sample_value("pilothouse_retries_total") or 0.0


async def test_thirty_percent_server_errors_still_answer_99_percent(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.reset(faults=True, seed=42)
    llm.admin.set_faults(error_rate=0.3, error_status=503)
    cfg = agent_config(
        unique_name,
        llm.url,
        models=("mock-llm", "mock-llm-fallback"),
        attempts=3,
        # A count-in-window breaker must be sized to the traffic: 30% of ~280 calls is
        # background noise here, not an outage.
        failure_threshold=1_000,
    )
    retries_before = retries_total()
    outcomes = []
    async with agent.build_agent(cfg, redis=redis_client) as a:
        for i in range(REQUESTS):
            outcomes.append(await a.handle(requests.AgentRequest(input=f"What is {i}+1?")))
    stats = llm.admin.stats()

    answered = [o for o in outcomes if o.result.status is requests.ResultStatus.COMPLETED]
    assert len(answered) >= 0.99 * REQUESTS
    for o in answered:
        assert o.result.model in ("mock-llm", "mock-llm-fallback")
    assert all(
        o.result.status in (requests.ResultStatus.COMPLETED, requests.ResultStatus.FALLBACK)
        for o in outcomes
    )

    calls = [d for o in outcomes for d in o.decisions if d.action == "llm_call"]
    failed = [d for d in calls if d.outcome == "error"]
    # Every call the mock saw is one llm_call record, and every injected error is visible.
    assert len(calls) == stats["total"]
    assert len(failed) == stats["by_outcome"].get("error", 0)
    assert len(failed) > 0.2 * len(calls)
    assert all("HTTP 503" in (d.error or "") for d in failed)
    retried = [d for d in failed if str(d.action_params.get("next", "")).startswith("retry in")]
    assert retried
    assert retries_total() - retries_before == len(retried)
    # A retried request: the failed attempt and the successful retry, numbered in order.
    example = next(o for o in answered if any(d.outcome == "error" for d in o.decisions))
    attempts = [
        (d.action_params["attempt"], d.outcome) for d in example.decisions if d.action == "llm_call"
    ]
    assert attempts[0] == (1, "error")
    assert attempts[-1][1] == "ok"
    steps = [d.step for d in example.decisions]
    assert steps == list(range(len(steps)))
