"""Work of a dead consumer is reclaimed after the visibility timeout with its delivery count, a
live consumer keeps its entries by renewing them, and an entry that keeps failing ends in the
dead-letter stream with the reason (real Redis; a consumer that reads and never acknowledges is
exactly what a killed pod leaves behind)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import config, envelopes, queue, records, requests

pytestmark = pytest.mark.integration

VISIBILITY = 0.3
TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def _cfg(agent: str) -> config.RuntimeConfig:
    return config.parse_config(
        {
            "agent": agent,
            "model": {"endpoint": "http://127.0.0.1:9/v1", "name": "m"},
            "workers": {"visibilityTimeoutSeconds": VISIBILITY, "maxDeliveries": 3},
        }
    )


async def _enqueue(q: queue.WorkQueue, rid: str) -> None:
    request = requests.AgentRequest(input="hello", request_id=rid)
    await q.enqueue(envelopes.Envelope(request, queue.now(), traceparent=TRACEPARENT))


async def test_a_dead_consumers_entries_are_reclaimed_with_their_count(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    dead = queue.WorkQueue(redis_client, cfg, consumer="pod-a")
    alive = queue.WorkQueue(redis_client, cfg, consumer="pod-b")
    await dead.ensure_group()
    await _enqueue(dead, "req-r1")
    [first] = await dead.read(1, block_ms=100)
    assert first.deliveries == 1
    assert await alive.reclaim(10) == []  # not idle long enough yet
    await asyncio.sleep(VISIBILITY + 0.1)
    [again] = await alive.reclaim(10)
    assert again.entry_id == first.entry_id
    assert again.deliveries == 2
    assert again.envelope is not None
    assert again.envelope.request.request_id == "req-r1"
    assert again.envelope.traceparent is not None
    assert again.envelope.traceparent.startswith("00-" + "a" * 32)


async def test_renewed_entries_stay_with_their_consumer(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    slow = queue.WorkQueue(redis_client, cfg, consumer="pod-slow")
    other = queue.WorkQueue(redis_client, cfg, consumer="pod-other")
    await slow.ensure_group()
    await _enqueue(slow, "req-slow")
    [d] = await slow.read(1, block_ms=100)
    for _ in range(4):  # a long LLM call: the worker renews its hold meanwhile
        await asyncio.sleep(VISIBILITY / 2)
        assert await slow.renew([d.entry_id]) == []
        assert await other.reclaim(10) == []
    await asyncio.sleep(VISIBILITY + 0.1)
    [taken] = await other.reclaim(10)
    assert taken.entry_id == d.entry_id
    assert await slow.renew([d.entry_id]) == [d.entry_id]  # the slow one learns it lost it


async def test_released_entries_are_reclaimable_at_once(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    a = queue.WorkQueue(redis_client, cfg, consumer="pod-a")
    b = queue.WorkQueue(redis_client, cfg, consumer="pod-b")
    await a.ensure_group()
    await _enqueue(a, "req-rel")
    [d] = await a.read(1, block_ms=100)
    await a.release([d.entry_id], error="shutting down")
    [taken] = await b.reclaim(10)
    assert taken.entry_id == d.entry_id
    assert taken.deliveries == 2


async def test_an_entry_failing_every_delivery_is_dead_lettered_with_the_reason(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    pods = [queue.WorkQueue(redis_client, cfg, consumer=f"pod-{i}") for i in range(4)]
    await pods[0].ensure_group()
    await _enqueue(pods[0], "req-poison")
    [d] = await pods[0].read(1, block_ms=100)
    await pods[0].release([d.entry_id], error="ValueError: boom")
    seen = [d.deliveries]
    for pod in pods[1:]:
        await asyncio.sleep(VISIBILITY + 0.05)
        [d] = await pod.reclaim(10)
        seen.append(d.deliveries)
    assert seen == [1, 2, 3, 4]
    # The fourth delivery is past maxDeliveries (3): the worker dead-letters it.
    failed = requests.AgentResult(
        request_id="req-poison", agent_id=cfg.agent, status="failed", answer="sorry"
    )
    moved, reason = await pods[3].dead_letter(
        d, "not completed after 3 deliveries", result_json=failed.model_dump_json().encode()
    )
    assert moved
    assert reason == "not completed after 3 deliveries (last error: ValueError: boom)"
    [letter] = await pods[3].dead_letters()
    assert letter["entry"] == d.entry_id
    assert letter["reason"] == reason
    assert letter["deliveries"] == "4"
    assert '"request_id":"req-poison"' in letter["r"]
    assert await pods[0].backlog() == 0
    state = await pods[0].state("req-poison")
    assert state is not None
    answer = state.result()
    assert answer is not None
    assert answer.status == "failed"
    assert await pods[0].reclaim(10) == []


async def test_malformed_entries_are_delivered_with_the_problem_named(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    q = queue.WorkQueue(redis_client, cfg, consumer="pod-a")
    await q.ensure_group()
    await redis_client.xadd(queue.stream_key(cfg), {"r": b'{"input": 5}'})
    await redis_client.xadd(queue.stream_key(cfg), {"something": b"else"})
    bad_type, no_request = await q.read(5, block_ms=100)
    assert bad_type.envelope is None
    assert bad_type.error is not None
    assert "input" in bad_type.error
    assert no_request.error == "malformed entry: no request field 'r'"
    moved, _ = await q.dead_letter(no_request, no_request.error)
    assert moved
    assert await q.backlog() == 1


async def test_an_answered_entry_redelivered_keeps_its_answer_and_its_audit_records(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    died = queue.WorkQueue(redis_client, cfg, consumer="pod-a")
    other = queue.WorkQueue(redis_client, cfg, consumer="pod-b")
    await died.ensure_group()
    await _enqueue(died, "req-answered")
    [d] = await died.read(1, block_ms=100)
    assert d.envelope is not None
    first = (
        requests.AgentResult(
            request_id="req-answered", agent_id=cfg.agent, status="completed", answer="4"
        )
        .model_dump_json()
        .encode()
    )
    decision = records.AgentDecision(
        request_id="req-answered",
        agent_id=cfg.agent,
        step=0,
        action="answer",
        result="4",
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    audit = envelopes.encode_audit(d.envelope.request, first, [decision])
    answered = envelopes.Completion(d.entry_id, "req-answered", first, None, audit)
    assert await died.answer([answered]) == [1]
    # The worker dies before its audit write returned: nothing acknowledged.
    await asyncio.sleep(VISIBILITY + 0.1)
    [again] = await other.reclaim(10)
    stored = await other.answered_audit(again.entry_id)
    assert stored == audit
    request, result, decisions = envelopes.decode_audit(stored)
    assert request == d.envelope.request
    assert result.answer == "4"
    assert decisions == [decision]
    # A second run's answer would not replace the first one.
    second = first.replace(b'"4"', b'"5"')
    assert await other.answer([envelopes.Completion(d.entry_id, "req-answered", second)]) == [0]
    await other.finish([again.entry_id])
    assert await other.backlog() == 0
    assert await other.answered_audit(again.entry_id) is None
    state = await other.state("req-answered")
    assert state is not None
    assert state.result_json == first


async def test_dead_lettering_an_answered_entry_keeps_the_answer(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    q = queue.WorkQueue(redis_client, cfg, consumer="pod-a")
    await q.ensure_group()
    await _enqueue(q, "req-kept")
    [d] = await q.read(1, block_ms=100)
    answer = (
        requests.AgentResult(
            request_id="req-kept", agent_id=cfg.agent, status="completed", answer="kept"
        )
        .model_dump_json()
        .encode()
    )
    await q.answer([envelopes.Completion(d.entry_id, "req-kept", answer, None, b"{}")])
    failed = answer.replace(b'"completed"', b'"failed"')
    moved, _ = await q.dead_letter(d, "the audit trail kept failing", result_json=failed)
    assert moved
    state = await q.state("req-kept")
    assert state is not None
    assert state.result_json == answer
    assert await q.answered_audit(d.entry_id) is None
