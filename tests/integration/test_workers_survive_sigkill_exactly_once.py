"""Two worker processes under load, one killed with SIGKILL mid-run: every accepted request is
answered exactly once and audited exactly once. Answers are counted where they are announced
(the result notifications, published only by the atomic store-and-acknowledge) and at the
results; audit rows are counted in PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from serving_support import Launcher, audit_counts, await_for, launcher, runtime_config

from pilothouse.runtime import config, queue, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

REQUESTS = 48
MARKER = "end-of-test-marker"


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def metric(rt: testing.RuntimeProcess, name: str) -> float:
    text = httpx.get(f"{rt.url}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


async def test_killing_a_worker_mid_run_loses_and_duplicates_nothing(
    launch: Launcher, redis_url: str, postgres_dsn: str, unique_name: str
) -> None:
    with MockLLMProcess(seed=11, faults={"latency_ms": 150}) as llm:
        doc = runtime_config(
            unique_name,
            llm.url,
            workers={"concurrency": 4, "visibilityTimeoutSeconds": 1.5},
        )
        cfg = config.parse_config(doc)
        api = launch(doc, role="api")
        doomed = launch(doc, role="worker")
        survivor = launch(doc, role="worker")

        announced: collections.Counter[str] = collections.Counter()
        redis = aioredis.Redis.from_url(redis_url)
        pubsub = redis.pubsub()
        await pubsub.psubscribe(f"{queue.key_base(cfg)}:results:*")

        async def listen() -> None:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    announced[msg["data"].split(b" ", 1)[0].decode()] += 1

        listener = asyncio.create_task(listen())
        try:
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
                calls = [
                    asyncio.create_task(
                        client.post(
                            "/v1/requests?wait=45",
                            json={"input": "What is 2+2?", "request_id": f"req-{unique_name}-{i}"},
                        )
                    )
                    for i in range(REQUESTS)
                ]
                # Kill one worker while it holds work.
                deadline = time.monotonic() + 20
                while metric(doomed, "pilothouse_inflight_requests") < 1:
                    assert time.monotonic() < deadline, "the worker never took work"
                    await asyncio.sleep(0.02)
                doomed.kill()
                responses = await asyncio.gather(*calls)
            ids = [f"req-{unique_name}-{i}" for i in range(REQUESTS)]
            assert [r.status_code for r in responses] == [200] * REQUESTS, [
                r.text for r in responses if r.status_code != 200
            ][:3]
            assert {r.json()["request_id"] for r in responses} == set(ids)
            assert all(r.json()["status"] == "completed" for r in responses)

            # The survivor took over what the killed worker held (redelivery happened).
            assert metric(survivor, "pilothouse_queue_reclaimed_total") >= 1

            # Answered exactly once: one notification per request, all stored. A notification
            # is published by the same script that acknowledges the entry, so once nothing is
            # left unacknowledged no answer can still come; and Redis delivers one connection's
            # publications in order, so when a marker published now arrives, every earlier
            # notification has arrived too.
            async def acknowledged() -> bool:
                return await queue.backlog(redis, cfg) == 0

            await await_for(acknowledged, within=30, what="every entry acknowledged")
            await redis.publish(f"{queue.key_base(cfg)}:results:{MARKER}", f"{MARKER} end")
            await await_for(
                lambda: asyncio.sleep(0, result=announced[MARKER] == 1),
                within=30,
                what="the end marker",
            )
            del announced[MARKER]
            assert announced == collections.Counter(dict.fromkeys(ids, 1))

            # Audited exactly once: one summary row per request, no step twice.
            async def all_audited() -> dict[str, tuple[int, int, int]] | None:
                counts = await audit_counts(postgres_dsn, ids)
                return counts if all(c[0] for c in counts.values()) else None

            counts = await await_for(all_audited, within=15, what="every request audited")
            assert {rid: c[0] for rid, c in counts.items()} == dict.fromkeys(ids, 1)
            assert all(c[1] == c[2] > 0 for c in counts.values())
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await pubsub.aclose()
            await redis.aclose()
