"""The circuit breaker against a real outage of the mock LLM, with its state in real Redis:
it opens after the threshold, stops all calls (of every replica) while open, lets one probe
through after the recovery timeout, and closes when the model is back."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from agent_support import ShiftedClock, agent_config
from prometheus_client import REGISTRY

from pilothouse.runtime import agent, breaker, config, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

THRESHOLD = 3
RECOVERY = 30.0


def outage_config(name: str, llm: MockLLMProcess, **extra: object) -> config.RuntimeConfig:
    return agent_config(
        name,
        llm.url,
        attempts=1,
        failure_threshold=THRESHOLD,
        recovery=RECOVERY,
        fallback=config.FallbackConfig(response="Sorry, we are down. A human will follow up."),
        **extra,  # type: ignore[arg-type]
    )


def calls(llm: MockLLMProcess) -> int:
    return llm.admin.stats()["total"]


def gauge(agent_id: str, model_key: str) -> float | None:
    return REGISTRY.get_sample_value(
        "pilothouse_circuit_breaker_state", {"agent": agent_id, "model": model_key}
    )


async def ask(a: agent.Agent, text: str = "What is 2+2?") -> agent.AgentOutcome:
    return await a.handle(requests.AgentRequest(input=text))


async def test_outage_opens_the_breaker_then_a_probe_closes_it(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(error_rate=1.0, error_status=503)
    clock = ShiftedClock()
    cfg = outage_config(unique_name, llm)
    key = cfg.model.key
    async with agent.build_agent(cfg, redis=redis_client, clock=clock) as a:
        for _ in range(THRESHOLD):
            outcome = await ask(a)
            assert outcome.result.status is requests.ResultStatus.FALLBACK
            assert outcome.result.fallback_reason == "server_error"
        assert calls(llm) == THRESHOLD
        assert gauge(unique_name, key) == 2  # open
        state = await a.chain.breakers.state(key)
        assert state.state is breaker.State.OPEN

        # Open: users get the fallback at once, the model gets nothing.
        for _ in range(5):
            outcome = await ask(a)
            assert outcome.result.status is requests.ResultStatus.FALLBACK
            assert outcome.result.answer == "Sorry, we are down. A human will follow up."
            assert outcome.result.fallback_reason == "circuit_open"
            call = next(d for d in outcome.decisions if d.action == "llm_call")
            assert call.outcome == "circuit_open"
            assert "circuit breaker open" in (call.error or "")
        assert calls(llm) == THRESHOLD

        # After the recovery timeout, still failing: one probe goes out and re-opens it.
        clock.advance(RECOVERY)
        outcome = await ask(a)
        assert outcome.result.fallback_reason == "server_error"
        assert calls(llm) == THRESHOLD + 1
        outcome = await ask(a)
        assert outcome.result.fallback_reason == "circuit_open"
        assert calls(llm) == THRESHOLD + 1

        # The model recovers; after the next recovery timeout the probe succeeds and closes it.
        llm.admin.clear_faults()
        clock.advance(RECOVERY)
        outcome = await ask(a)
        assert outcome.result.status is requests.ResultStatus.COMPLETED
        assert "4" in outcome.result.answer
        assert gauge(unique_name, key) == 0
        assert await redis_client.exists(a.chain.breakers.key(key)) == 0  # closed = no key
        for _ in range(3):
            assert (await ask(a)).result.status is requests.ResultStatus.COMPLETED
        assert calls(llm) == THRESHOLD + 2 + 3


async def test_half_open_lets_only_the_configured_probes_through(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    llm.admin.set_faults(error_rate=1.0)
    clock = ShiftedClock()
    cfg = outage_config(unique_name, llm)
    async with agent.build_agent(cfg, redis=redis_client, clock=clock) as a:
        for _ in range(THRESHOLD):
            await ask(a)
        # Recovered but slow: the probe is still in flight while the others arrive.
        llm.admin.set_faults(latency_ms=300)
        clock.advance(RECOVERY)
        before = calls(llm)
        outcomes = await asyncio.gather(*(ask(a) for _ in range(6)))
    statuses = sorted(o.result.status.value for o in outcomes)
    assert statuses == ["completed"] + ["fallback"] * 5
    assert calls(llm) - before == 1


async def test_a_breaker_tripped_by_one_replica_stops_the_other(
    llm: MockLLMProcess, redis_url: str, unique_name: str
) -> None:
    llm.admin.set_faults(error_rate=1.0, error_status=502)
    cfg = outage_config(unique_name, llm)
    # Two replicas: separate agents, separate Redis connections, separate HTTP pools.
    client_a = aioredis.Redis.from_url(redis_url)
    client_b = aioredis.Redis.from_url(redis_url)
    try:
        async with (
            agent.build_agent(cfg, redis=client_a) as replica_a,
            agent.build_agent(cfg, redis=client_b) as replica_b,
        ):
            for _ in range(THRESHOLD):
                await ask(replica_a)
            seen_by_a = calls(llm)
            assert seen_by_a == THRESHOLD
            for _ in range(5):
                outcome = await ask(replica_b)
                assert outcome.result.status is requests.ResultStatus.FALLBACK
                assert outcome.result.fallback_reason == "circuit_open"
            assert calls(llm) - seen_by_a == 0  # replica B never called the model
            # And B's view of the shared state is the same as A's.
            key = cfg.model.key
            state_a = await replica_a.chain.breakers.state(key)
            state_b = await replica_b.chain.breakers.state(key)
            assert state_a == state_b
            assert state_a.state is breaker.State.OPEN
    finally:
        await client_a.aclose()
        await client_b.aclose()


async def test_each_model_has_its_own_breaker(
    llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    # Only the primary is down: once its breaker is open, the fallback model answers directly.
    llm.admin.set_faults(error_rate=1.0, models=["mock-llm"])
    cfg = outage_config(unique_name, llm, models=("mock-llm", "mock-llm-fallback"))
    async with agent.build_agent(cfg, redis=redis_client) as a:
        for _ in range(THRESHOLD):
            outcome = await ask(a)
            assert outcome.result.model == "mock-llm-fallback"
        before = llm.admin.stats()["by_model"]
        outcome = await ask(a)
    after = llm.admin.stats()["by_model"]
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert result.fallback_used
    assert result.fallback_reason == "circuit_open"
    assert result.model == "mock-llm-fallback"
    assert after.get("mock-llm", 0) == before.get("mock-llm", 0)
    assert after["mock-llm-fallback"] == before["mock-llm-fallback"] + 1
