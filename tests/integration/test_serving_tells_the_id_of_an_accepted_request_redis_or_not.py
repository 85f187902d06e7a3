"""A request accepted by the queue is acknowledged to its caller with its id (202), even when
Redis goes away while the caller waits for the answer: a 503 would tell the caller that nothing
was accepted, and a caller that sent no request id would send the request again, under a new
id, so it would run twice (the real app over ASGI, a Redis of this test only, no worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from serving_support import await_for, runtime_config

from pilothouse.runtime import config, devservers, queue, serving

pytestmark = pytest.mark.integration

WAIT_SECONDS = 2.0


@pytest.fixture
def redis_alone() -> Iterator[devservers.RedisServer]:
    """A Redis of this test only: it is stopped while a caller waits."""
    with devservers.RedisServer() as server:
        yield server.start()


@pytest.fixture
async def api_only(
    redis_alone: devservers.RedisServer, unique_name: str
) -> AsyncIterator[serving.Runtime]:
    doc = runtime_config(unique_name, "http://127.0.0.1:9/v1", audit={"enabled": False})
    rt = await serving.build_runtime(
        config.parse_config(doc),
        role=serving.Role.API,
        environ={"PILOTHOUSE_REDIS_URL": redis_alone.url},
        tracing=False,
    )
    await rt.start()
    try:
        yield rt
    finally:
        await rt.drain(0)
        await rt.close()


async def test_redis_lost_during_the_wait_still_answers_202_with_the_id(
    api_only: serving.Runtime, redis_alone: devservers.RedisServer
) -> None:
    work_queue, waiter = api_only.work_queue, api_only.waiter
    assert work_queue is not None
    assert waiter is not None
    transport = httpx.ASGITransport(app=api_only.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as client:
        call = asyncio.create_task(
            client.post(f"/v1/requests?wait={WAIT_SECONDS}", json={"input": "What is 2+2?"})
        )

        async def accepted() -> bool:
            return await work_queue.backlog() == 1

        await await_for(accepted, within=WAIT_SECONDS / 2, what="the request to be queued")
        await asyncio.to_thread(redis_alone.stop)
        with pytest.raises(queue.QueueUnavailable):
            await work_queue.backlog()

        response = await call

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "queued"
    assert body["request_id"]
    assert waiter.waiting == 0
