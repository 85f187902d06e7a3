"""A caller that waits for its answer is released in every case: answered in time, not answered
in time (202, readable later), refused by a full queue (429), or repeating a known request id;
no waiter is left behind (the real app over ASGI, real Redis, no worker: nothing answers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from serving_support import runtime_config

from pilothouse.runtime import config, serving

pytestmark = pytest.mark.integration


@pytest.fixture
async def api_only(redis_url: str, unique_name: str) -> AsyncIterator[serving.Runtime]:
    doc = runtime_config(
        unique_name,
        "http://127.0.0.1:9/v1",
        workers={"queueMaxLength": 2},
        audit={"enabled": False},
    )
    rt = await serving.build_runtime(
        config.parse_config(doc),
        role=serving.Role.API,
        environ={"PILOTHOUSE_REDIS_URL": redis_url},
        tracing=False,
    )
    await rt.start()
    try:
        yield rt
    finally:
        await rt.drain(0)
        await rt.close()


async def test_no_waiter_outlives_its_http_request(api_only: serving.Runtime) -> None:
    assert api_only.waiter is not None
    transport = httpx.ASGITransport(app=api_only.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as client:
        slow = await client.post(
            "/v1/requests?wait=0.2", json={"input": "a", "request_id": "req-a"}
        )
        assert slow.status_code == 202
        assert slow.json() == {"request_id": "req-a", "state": "queued"}
        again = await client.post(
            "/v1/requests?wait=0.2", json={"input": "a", "request_id": "req-a"}
        )
        assert again.status_code == 202
        assert (await client.post("/v1/requests", json={"input": "b"})).status_code == 202
        full = await client.post("/v1/requests?wait=5", json={"input": "c"})
        assert full.status_code == 429
        assert api_only.waiter.waiting == 0
