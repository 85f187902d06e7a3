"""A caller waiting in one API process hears its result the moment a worker stores it, and
still gets it when the notification was missed (the subscription was down): a result is never
lost on the way to a waiting caller, only learnt later (real Redis, restarted mid-test)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import config, devservers, envelopes, queue, replies, requests

pytestmark = pytest.mark.integration


def _cfg(agent: str) -> config.RuntimeConfig:
    return config.parse_config(
        {"agent": agent, "model": {"endpoint": "http://127.0.0.1:9/v1", "name": "m"}}
    )


def _answer(cfg: config.RuntimeConfig, rid: str, text: str) -> bytes:
    result = requests.AgentResult(
        request_id=rid, agent_id=cfg.agent, status="completed", answer=text
    )
    return result.model_dump_json().encode()


async def test_the_waiting_caller_gets_the_published_result(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    api = queue.WorkQueue(redis_client, cfg, consumer="api")
    worker = queue.WorkQueue(redis_client, cfg, consumer="worker")
    waiter = replies.ResultWaiter(redis_client, cfg, instance="api-1")
    await waiter.start()
    try:
        await api.ensure_group()
        fut = waiter.expect("req-w1")
        other = waiter.expect("req-w2")
        for rid in ("req-w1", "req-w2"):
            request = requests.AgentRequest(input="hi", request_id=rid)
            env = envelopes.Envelope(request, queue.now(), reply_to=waiter.channel)
            await api.enqueue(env)
        [d1, _] = await worker.read(2, block_ms=100)
        assert d1.envelope is not None
        assert d1.envelope.reply_to == waiter.channel
        await worker.answer(
            [
                envelopes.Completion(
                    d1.entry_id, "req-w1", _answer(cfg, "req-w1", "one"), waiter.channel
                )
            ]
        )
        got = await waiter.wait("req-w1", fut, 5.0)
        assert got is not None
        assert requests.AgentResult.model_validate_json(got).answer == "one"
        # Nothing arrives for a request that is not answered: the wait ends empty-handed.
        assert await waiter.wait("req-w2", other, 0.2) is None
    finally:
        await waiter.stop()


async def test_a_result_published_while_the_subscription_was_down_is_still_delivered(
    redis_server: devservers.RedisServer, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    api_client = aioredis.Redis.from_url(redis_server.url, socket_timeout=2)
    waiter = replies.ResultWaiter(api_client, cfg, instance="api-restart")
    await waiter.start()
    try:
        api = queue.WorkQueue(api_client, cfg, consumer="api")
        await api.ensure_group()
        fut = waiter.expect("req-late")
        request = requests.AgentRequest(input="hi", request_id="req-late")
        await api.enqueue(envelopes.Envelope(request, queue.now(), reply_to=waiter.channel))
        redis_server.stop()
        redis_server.start()
        # Redis came back empty-handed of subscribers; store the answer before the waiter
        # resubscribes (it retries with a backoff), so the notification is missed.
        worker_client = aioredis.Redis.from_url(redis_server.url)
        try:
            await worker_client.set(
                queue.state_key(cfg, "req-late"), envelopes.DONE + _answer(cfg, "req-late", "late")
            )
        finally:
            await worker_client.aclose()
        got = await waiter.wait("req-late", fut, 1.0)
        assert got is not None
        assert requests.AgentResult.model_validate_json(got).answer == "late"
    finally:
        await waiter.stop()
        await api_client.aclose()
