"""Liveness follows the heartbeat; readiness turns off while draining or when a check fails,
and is cached so probes do not hammer Redis."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.runtime import probes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stale_heartbeat_fails_liveness() -> None:
    clock = Clock()
    health = probes.Health(clock=clock)
    assert health.alive() == (True, 0.0)
    clock.now += probes.STALE_AFTER_SECONDS + 1
    alive, age = health.alive()
    assert not alive
    assert age == probes.STALE_AFTER_SECONDS + 1
    health.beat()
    assert health.alive()[0]
    assert health.loop_lag == probes.STALE_AFTER_SECONDS + 1 - probes.HEARTBEAT_INTERVAL_SECONDS


async def test_readiness_reports_failed_checks_and_drain() -> None:
    clock = Clock()
    calls = 0
    redis_up = True

    async def redis_check() -> str | None:
        nonlocal calls
        calls += 1
        return None if redis_up else "redis: connection refused"

    health = probes.Health({"redis": redis_check}, clock=clock)
    assert (await health.readiness()).ready
    assert (await health.readiness()).ready
    assert calls == 1  # cached within CHECK_CACHE_SECONDS

    redis_up = False
    clock.now += probes.CHECK_CACHE_SECONDS
    r = await health.readiness()
    assert not r.ready
    assert r.reasons == {"redis": "redis: connection refused"}

    redis_up = True
    health.begin_drain()
    r = await health.readiness()
    assert not r.ready
    assert "draining" in r.reasons
    assert health.draining


async def test_a_check_that_hangs_or_raises_counts_as_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def hanging() -> str | None:
        await asyncio.sleep(60)
        return None

    async def broken() -> str | None:
        raise ConnectionError("nope")

    monkeypatch.setattr(probes, "CHECK_TIMEOUT_SECONDS", 0.01)
    health = probes.Health({"slow": hanging, "broken": broken})
    r = await health.readiness()
    assert not r.ready
    assert r.reasons["broken"] == "ConnectionError: nope"
    assert r.reasons["slow"].startswith("no answer within")
