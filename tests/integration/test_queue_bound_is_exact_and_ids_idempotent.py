"""The queue's backlog bound holds exactly under concurrent producers, and a request id is
queued once: the guarantees the API's 429 and idempotent retries rest on (real Redis)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import config, envelopes, queue, requests

pytestmark = pytest.mark.integration


def _cfg(agent: str, **workers: object) -> config.RuntimeConfig:
    return config.parse_config(
        {
            "agent": agent,
            "model": {"endpoint": "http://127.0.0.1:9/v1", "name": "m"},
            "workers": workers,
        }
    )


def _envelope(text: str, **kw: object) -> envelopes.Envelope:
    return envelopes.Envelope(requests.AgentRequest(input=text, **kw), queue.now())  # type: ignore[arg-type]


async def test_concurrent_producers_never_pass_the_bound(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name, queueMaxLength=25)
    q = queue.WorkQueue(redis_client, cfg, consumer="api")
    await q.ensure_group()

    outcomes = await asyncio.gather(
        *(q.enqueue(_envelope(f"hello {i}")) for i in range(80)), return_exceptions=True
    )
    accepted = [o for o in outcomes if isinstance(o, envelopes.Accepted)]
    full = [o for o in outcomes if isinstance(o, queue.QueueFull)]
    assert len(accepted) == 25
    assert len(full) == 55
    assert all(e.retry_after >= 1 and e.limit == 25 for e in full)
    assert await q.backlog() == 25
    assert await queue.backlog(redis_client, cfg) == 25


async def test_acknowledged_entries_free_their_place(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name, queueMaxLength=2)
    q = queue.WorkQueue(redis_client, cfg, consumer="w1")
    await q.ensure_group()
    await q.enqueue(_envelope("a"))
    await q.enqueue(_envelope("b"))
    with pytest.raises(queue.QueueFull):
        await q.enqueue(_envelope("c"))
    [first, _] = await q.read(2, block_ms=100)
    assert await q.backlog() == 2  # delivered but unacknowledged still counts
    assert first.envelope is not None
    result = requests.AgentResult(
        request_id=first.envelope.request.request_id,
        agent_id=cfg.agent,
        status="completed",
        answer="ok",
    )
    answer = result.model_dump_json().encode()
    done = await q.answer([envelopes.Completion(first.entry_id, result.request_id, answer)])
    assert done == [1]
    assert await q.backlog() == 2  # answered, not acknowledged yet: still counts
    await q.finish([first.entry_id])
    assert await q.backlog() == 1
    await q.enqueue(_envelope("c"))


async def test_a_request_id_is_queued_once_and_answered_state_is_returned(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    q = queue.WorkQueue(redis_client, cfg, consumer="w1")
    await q.ensure_group()
    env = _envelope("What is 2+2?", request_id="req-fixed-1")
    accepted = await q.enqueue(env)
    assert isinstance(accepted, envelopes.Accepted)
    again = await q.enqueue(env)
    assert isinstance(again, envelopes.RequestState)
    assert again.state == "queued"
    assert await q.backlog() == 1

    [d] = await q.read(5, block_ms=100)
    result = requests.AgentResult(
        request_id="req-fixed-1", agent_id=cfg.agent, status="completed", answer="4"
    )
    [answered] = await q.answer(
        [envelopes.Completion(d.entry_id, "req-fixed-1", result.model_dump_json().encode())]
    )
    assert answered == 1
    await q.finish([d.entry_id])
    done = await q.enqueue(env)
    assert isinstance(done, envelopes.RequestState)
    assert done.state == "done"
    stored = done.result()
    assert stored is not None
    assert stored.answer == "4"
    assert await q.backlog() == 0


async def test_only_the_first_answer_of_an_entry_is_stored(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    q = queue.WorkQueue(redis_client, cfg, consumer="w1")
    await q.ensure_group()
    await q.enqueue(_envelope("x", request_id="req-twice"))
    [d] = await q.read(1, block_ms=100)

    def completion(answer: str) -> envelopes.Completion:
        r = requests.AgentResult(
            request_id="req-twice", agent_id=cfg.agent, status="completed", answer=answer
        )
        return envelopes.Completion(d.entry_id, "req-twice", r.model_dump_json().encode())

    assert await q.answer([completion("first")]) == [1]
    assert await q.answer([completion("second")]) == [0]  # another delivery answered first
    await q.finish([d.entry_id])
    assert await q.answer([completion("third")]) == [-1]  # no longer pending at all
    state = await q.state("req-twice")
    assert state is not None
    result = state.result()
    assert result is not None
    assert result.answer == "first"


async def test_an_approved_escalation_resumes_once(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = _cfg(unique_name)
    q = queue.WorkQueue(redis_client, cfg, consumer="w1")
    await q.ensure_group()
    await q.enqueue(_envelope("refund me", request_id="req-esc"))
    [d] = await q.read(1, block_ms=100)
    escalated = requests.AgentResult(
        request_id="req-esc",
        agent_id=cfg.agent,
        status="escalated",
        answer="waiting for approval",
        escalation_id="esc-req-esc-2",
    )
    await q.answer(
        [envelopes.Completion(d.entry_id, "req-esc", escalated.model_dump_json().encode())]
    )
    await q.finish([d.entry_id])
    resumed = _envelope("refund me", request_id="req-esc", approved_escalation="esc-req-esc-2")
    assert isinstance(await q.enqueue(resumed), envelopes.Accepted)
    # A second resume (another replica acting on the same approval) adds nothing.
    assert isinstance(await q.enqueue(resumed), envelopes.RequestState)
    assert await q.backlog() == 1
    # A resume naming another escalation does not re-run the request either.
    other = _envelope("refund me", request_id="req-esc", approved_escalation="esc-other")
    assert isinstance(await q.enqueue(other), envelopes.RequestState)
