"""Redis going away mid-run: requests keep being answered with per-process breakers (which still
protect the model), nothing raises to the caller, the degraded gauge says so, and the shared
state is used again once Redis is back."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from agent_support import agent_config
from prometheus_client import REGISTRY

from pilothouse.runtime import agent, devservers, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


def degraded() -> float | None:
    return REGISTRY.get_sample_value("pilothouse_circuit_breaker_degraded")


async def test_requests_succeed_while_redis_is_down_and_sharing_resumes_after(
    llm: MockLLMProcess, redis_server: devservers.RedisServer, unique_name: str
) -> None:
    cfg = agent_config(unique_name, llm.url, attempts=1, failure_threshold=2)
    key = cfg.model.key
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with agent.build_agent(cfg, redis=client) as a:

            async def ask(session_id: str | None = None) -> agent.AgentOutcome:
                return await a.handle(
                    requests.AgentRequest(input="What is 2+2?", session_id=session_id)
                )

            assert (await ask()).result.status is requests.ResultStatus.COMPLETED
            assert not a.chain.breakers.degraded

            redis_server.stop()
            try:
                for _ in range(3):
                    outcome = await ask()
                    assert outcome.result.status is requests.ResultStatus.COMPLETED
                    assert "4" in outcome.result.answer
                assert a.chain.breakers.degraded
                assert degraded() == 1
                # A session cannot be loaded: answered anyway, and the record says why.
                outcome = await ask(session_id=f"s-{unique_name}")
                assert outcome.result.status is requests.ResultStatus.COMPLETED
                assert {d.action for d in outcome.decisions if d.outcome == "error"} == {
                    "session_load",
                    "session_save",
                }
                # The local breaker still protects the model: it opens on local failures.
                llm.admin.set_faults(error_rate=1.0)
                before = llm.admin.stats()["total"]
                reasons = [(await ask()).result.fallback_reason for _ in range(4)]
                assert reasons == ["server_error", "server_error", "circuit_open", "circuit_open"]
                assert llm.admin.stats()["total"] - before == 2
                llm.admin.clear_faults()
            finally:
                redis_server.start()

            # Back: the next checks (once per reconnect interval) find Redis again. Redis
            # restarted empty, so the shared breaker is closed and the model is called.
            deadline = time.monotonic() + 10
            while a.chain.breakers.degraded and time.monotonic() < deadline:
                await ask()
                await asyncio.sleep(0.1)
            assert not a.chain.breakers.degraded
            assert degraded() == 0
            outcome = await ask()
            assert outcome.result.status is requests.ResultStatus.COMPLETED
            assert (await a.chain.breakers.state(key)).state.value == "closed"
    finally:
        await client.aclose()
