"""The breaker's Lua script in real Redis is the pure state machine: random event sequences give
the same decisions and the same stored state in both."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import breaker, config

pytestmark = pytest.mark.integration

EVENTS = (breaker.BreakerEvent.ACQUIRE, breaker.BreakerEvent.SUCCESS, breaker.BreakerEvent.FAILURE)


class ManualClock:
    def __init__(self) -> None:
        self.ms = 1_750_000_000_000

    def time(self) -> float:
        return self.ms / 1000

    def monotonic(self) -> float:
        return self.ms / 1000


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.mark.parametrize("seed", range(6))
async def test_random_event_sequences_agree(
    redis_client: aioredis.Redis, unique_name: str, seed: int
) -> None:
    rng = random.Random(seed)
    cfg = config.CircuitBreakerConfig(
        failure_threshold=rng.randint(1, 4),
        window_seconds=rng.choice([0.05, 0.2, 1.0]),
        recovery_timeout_seconds=rng.choice([0.05, 0.3]),
        half_open_max_probes=rng.randint(1, 3),
    )
    clock = ManualClock()
    shared = breaker.CircuitBreakers(
        redis_client, cfg, key_prefix="test", namespace="ns", agent=unique_name, clock=clock
    )
    settings = breaker.BreakerSettings.from_config(cfg)
    expected = breaker.CLOSED
    model = f"http://llm.example/v1#m{seed}"
    for _ in range(300):
        clock.ms += rng.choice([0, 1, 7, 30, 120, 400])
        event = rng.choice(EVENTS)
        expected, want = breaker.transition(expected, event, clock.ms, settings)
        if event is breaker.BreakerEvent.ACQUIRE:
            got = await shared.acquire(model)
        else:
            # probe=True forces the round trip, so every event reaches the script.
            got = await shared.record(
                model, success=event is breaker.BreakerEvent.SUCCESS, probe=True
            )
        assert got == want, (event, clock.ms)
        assert await shared.state(model) == expected
    assert not shared.degraded


async def test_keys_are_namespaced_and_expire(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = config.CircuitBreakerConfig(failure_threshold=2)
    shared = breaker.CircuitBreakers(
        redis_client, cfg, key_prefix="pilothouse", namespace="shop", agent=unique_name
    )
    model = "http://llm.example/v1#gpt"
    await shared.record(model, success=False, probe=False)
    key = f"pilothouse:breaker:shop/{unique_name}:{model}"
    assert shared.key(model) == key
    assert await redis_client.hget(key, "s") == "closed"
    assert 0 < await redis_client.pttl(key) <= breaker.KEY_TTL_MS


async def test_a_success_outside_a_probe_costs_no_round_trip(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    shared = breaker.CircuitBreakers(
        redis_client,
        config.CircuitBreakerConfig(),
        key_prefix="t",
        namespace="n",
        agent=unique_name,
    )
    assert await shared.record("m", success=True, probe=False) is None


async def test_the_script_is_reloaded_after_a_script_flush(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    shared = breaker.CircuitBreakers(
        redis_client,
        config.CircuitBreakerConfig(failure_threshold=1),
        key_prefix="t",
        namespace="n",
        agent=unique_name,
    )
    await shared.acquire("m")
    await redis_client.script_flush()
    decision = await shared.record("m", success=False, probe=False)
    assert decision is not None
    assert decision.state is breaker.State.OPEN
    assert not shared.degraded
