"""A runtime started on a Redis that keeps nothing on disk says so, without refusing to serve:
a warning on ``/readyz`` (still 200), ``pilothouse_queue_durable 0`` and a log line; on a Redis
with the append-only file on, no warning and the gauge at 1 (real ``pilothouse serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from serving_support import runtime_config

from pilothouse.runtime import devservers, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_alone() -> Iterator[devservers.RedisServer]:
    """A Redis of this test only: its persistence is switched on."""
    with devservers.RedisServer() as server:
        yield server.start()


def _durable_gauge(client: httpx.Client, agent: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'pilothouse_queue_durable{{agent="{agent}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no pilothouse_queue_durable sample for the agent")


def test_a_redis_without_persistence_is_a_readiness_warning(
    redis_alone: devservers.RedisServer, postgres_dsn: str, tmp_path: Path, unique_name: str
) -> None:
    env = {"PILOTHOUSE_REDIS_URL": redis_alone.url, "PILOTHOUSE_POSTGRES_DSN": postgres_dsn}
    with MockLLMProcess(seed=13) as llm:
        cfg = runtime_config(unique_name, llm.url)
        with (
            testing.RuntimeProcess(cfg, env=env, workdir=tmp_path / "volatile") as rt,
            httpx.Client(base_url=rt.url, timeout=20) as client,
        ):
            ready = client.get("/readyz")
            assert ready.status_code == 200
            warning = ready.json()["warnings"]["redis_persistence"]
            assert "appendonly yes" in warning
            assert "lost if Redis restarts" in warning
            assert _durable_gauge(client, unique_name) == 0
            said = [e for e in rt.logs() if "would not survive a Redis restart" in str(e)]
            assert said
            assert said[0]["level"] == "warning"

        with redis.Redis.from_url(redis_alone.url) as r:
            r.config_set("appendonly", "yes")
        with (
            testing.RuntimeProcess(cfg, env=env, workdir=tmp_path / "durable") as rt,
            httpx.Client(base_url=rt.url, timeout=20) as client,
        ):
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert "warnings" not in ready.json()
            assert _durable_gauge(client, unique_name) == 1
