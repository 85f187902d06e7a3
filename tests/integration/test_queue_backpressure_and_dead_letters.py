"""Backpressure the caller can see, and poison that cannot stall the queue, against
``pilothouse serve`` processes: a full queue answers 429 with ``Retry-After`` (and accepts
again once there is room), and an entry that fails every delivery ends in the dead-letter
stream after ``maxDeliveries`` tries with the reason, its caller answered ``failed``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from serving_support import Launcher, launcher, runtime_config, wait_for

from pilothouse.runtime import config, queue, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def metric(rt: testing.RuntimeProcess, name: str) -> float:
    text = httpx.get(f"{rt.url}/metrics", timeout=5).text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


def test_a_full_queue_answers_429_with_retry_after(
    launch: Launcher, llm: MockLLMProcess, unique_name: str
) -> None:
    doc = runtime_config(unique_name, llm.url, workers={"queueMaxLength": 5})
    api = launch(doc, role="api")  # no worker: nothing drains the queue
    with httpx.Client(base_url=api.url, timeout=10) as client:
        accepted = [client.post("/v1/requests", json={"input": f"q{i}"}) for i in range(5)]
        assert [r.status_code for r in accepted] == [202] * 5
        rejected = client.post("/v1/requests", json={"input": "one too many"})
        assert rejected.status_code == 429
        assert int(rejected.headers["retry-after"]) >= 1
        body = rejected.json()
        assert body["error"] == "queue_full"
        assert "5 of 5" in body["message"]
        # The synchronous endpoint says the same, rather than waiting.
        assert client.post("/agent/process", json={"input": "sync"}).status_code == 429
    assert metric(api, "pilothouse_queue_rejected_total") == 2
    assert metric(api, "pilothouse_queue_backlog") == 5

    # A worker drains the queue; then there is room again.
    launch(doc, role="worker")
    with httpx.Client(base_url=api.url, timeout=10) as client:
        ids = [r.json()["request_id"] for r in accepted]

        def drained() -> bool:
            return all(client.get(f"/v1/requests/{i}").json()["state"] == "done" for i in ids)

        wait_for(drained, timeout=20, what="the backlog answered")
        # Answered entries leave the backlog once acknowledged (after their audit write).
        wait_for(
            lambda: client.post("/v1/requests", json={"input": "room now"}).status_code == 202,
            timeout=10,
            what="room in the queue again",
        )


def test_a_poisoned_entry_is_dead_lettered_after_max_deliveries(
    launch: Launcher, llm: MockLLMProcess, redis_url: str, unique_name: str
) -> None:
    doc = runtime_config(
        unique_name, llm.url, workers={"maxDeliveries": 3, "visibilityTimeoutSeconds": 1}
    )
    cfg = config.parse_config(doc)
    rt = launch(doc, role="all")
    r = redis.Redis.from_url(redis_url)
    try:
        # Written by something that is not our API: a request the worker cannot decode.
        r.xadd(queue.stream_key(cfg), {"r": b'{"request_id": "req-poison", "input": 42}'})
        letters = wait_for(
            lambda: r.xrange(queue.dead_letter_key(cfg)),
            timeout=15,
            what="the dead letter",
        )
        [(_, fields)] = letters
        assert fields[b"deliveries"] == b"3"
        reason = fields[b"reason"].decode()
        assert reason.startswith("failed after 3 deliveries: malformed entry: invalid request")
        assert "input" in reason
        assert b'"req-poison"' in fields[b"r"]
        assert r.xlen(queue.stream_key(cfg)) == 0
    finally:
        r.close()
    with httpx.Client(base_url=rt.url, timeout=10) as client:
        state = client.get("/v1/requests/req-poison").json()
        assert state["state"] == "done"
        assert state["result"]["status"] == "failed"
        assert state["result"]["fallback_reason"] == "dead_lettered"
        # The queue is not stalled by it.
        ok = client.post("/v1/requests?wait=10", json={"input": "What is 2+2?"})
        assert ok.status_code == 200
    assert metric(rt, "pilothouse_dead_letters_total") == 1
    logged = [e for e in rt.logs() if e.get("msg") == "entry moved to the dead-letter stream"]
    assert len(logged) == 1
    assert logged[0]["reason"] == reason
