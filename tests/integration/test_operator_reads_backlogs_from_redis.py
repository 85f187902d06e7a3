"""The autoscaler's backlog read against a real Redis: queued plus in-flight, never acked work."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pilothouse.operator import backlogs, errors
from pilothouse.runtime import config, devservers, queue

pytestmark = pytest.mark.integration


def _cfg(agent: str) -> config.RuntimeConfig:
    return config.RuntimeConfig(
        agent=agent, namespace="shop", model=config.ModelConfig(endpoint="http://m/v1", name="m")
    )


async def test_backlog_counts_queued_and_delivered_but_unacknowledged(
    redis_url: str, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    stream = queue.stream_key(cfg)
    client = aioredis.Redis.from_url(redis_url)
    reader = backlogs.BacklogReader(timeout=1.0)
    try:
        assert await reader.read(redis_url, cfg) == 0  # no stream yet
        await client.xgroup_create(stream, queue.GROUP, id="0", mkstream=True)
        ids = [await client.xadd(stream, {"n": str(i)}) for i in range(7)]
        # Two delivered to a worker (pending), one of them completed as the runtime does it.
        await client.xreadgroup(queue.GROUP, "w1", {stream: ">"}, count=2)
        await client.xack(stream, queue.GROUP, ids[0])
        await client.xdel(stream, ids[0])

        assert await reader.read(redis_url, cfg) == 6  # 5 queued + 1 in flight
    finally:
        await client.delete(stream)
        await client.aclose()
        await reader.close()


async def test_an_unreachable_redis_is_reported_not_hung() -> None:
    reader = backlogs.BacklogReader(timeout=0.5)
    url = f"redis://127.0.0.1:{devservers.free_port()}/0"
    try:
        with pytest.raises(errors.BacklogUnavailable, match="cannot read the backlog of shop/a"):
            await reader.read(url, _cfg("a"))
    finally:
        await reader.close()


async def test_a_malformed_url_is_reported() -> None:
    reader = backlogs.BacklogReader(timeout=0.5)
    try:
        with pytest.raises(errors.BacklogUnavailable):
            await reader.read("not-a-url", _cfg("a"))
    finally:
        await reader.close()
