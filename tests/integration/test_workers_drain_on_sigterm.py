"""SIGTERM drains a worker process: ``/readyz`` turns 503 first (while the process still serves),
no new work is taken, in-flight work finishes within the grace period or is given back
unacknowledged for another replica, and every accepted request is answered exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving_support import (
    Launcher,
    all_done,
    launcher,
    results_done,
    runtime_config,
    wait_for,
)

from pilothouse.runtime import testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def inflight(rt: testing.RuntimeProcess) -> float:
    text = httpx.get(f"{rt.url}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "pilothouse_inflight_requests"
    )


class ReadinessWatch:
    """Polls a process's /readyz in a thread and remembers what it saw, in order."""

    def __init__(self, rt: testing.RuntimeProcess) -> None:
        self.rt = rt
        self.seen: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=1) as client:
            while not self._stop.is_set():
                try:
                    code: int | str = client.get(f"{self.rt.url}/readyz").status_code
                except httpx.HTTPError:
                    code = "down"
                if not self.seen or self.seen[-1] != code:
                    self.seen.append(code)
                time.sleep(0.01)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _submit(api: testing.RuntimeProcess, prefix: str, n: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=api.url, timeout=10) as client:
        for i in range(n):
            rid = f"req-{prefix}-{i}"
            r = client.post("/v1/requests", json={"input": "What is 2+2?", "request_id": rid})
            assert r.status_code == 202, r.text
            ids.append(rid)
    return ids


def test_sigterm_turns_readiness_off_first_and_finishes_in_flight_work(
    launch: Launcher, unique_name: str
) -> None:
    with MockLLMProcess(seed=5, faults={"latency_ms": 800}) as llm:
        doc = runtime_config(unique_name, llm.url, workers={"concurrency": 3})
        api = launch(doc, role="api")
        worker = launch(doc, role="worker")
        ids = _submit(api, unique_name, 9)
        wait_for(lambda: inflight(worker) >= 3, timeout=10, what="work in flight")
        with ReadinessWatch(worker) as watch:
            wait_for(lambda: watch.seen == [200], timeout=5, what="a first readiness answer")
            worker.terminate()
            assert worker.wait(30) == 0
        # Readiness dropped while the process still answered, before it went away.
        assert watch.seen[:3] == [200, 503, "down"], watch.seen
        finished = [e for e in worker.logs() if e.get("msg") == "request answered"]
        assert len(finished) == 3  # the in-flight ones, and nothing new after the signal

        with httpx.Client(base_url=api.url, timeout=10) as client:
            assert len(results_done(client, ids)) == 3
            # The rest waits, accepted and unanswered, until another replica comes.
            launch(doc, role="worker")
            done = wait_for(
                lambda: all_done(client, ids),
                timeout=30,
                what="every request answered",
            )
        assert {rid for rid, result in done.items() if result["status"] == "completed"} == set(ids)


def test_work_unfinished_at_the_end_of_the_grace_period_goes_to_another_replica(
    launch: Launcher, unique_name: str
) -> None:
    with MockLLMProcess(seed=6, faults={"latency_ms": 3000}) as llm:
        doc = runtime_config(
            unique_name,
            llm.url,
            # Far longer than the test: a given-back entry must not wait for it.
            workers={"concurrency": 2, "shutdownGraceSeconds": 0.3, "visibilityTimeoutSeconds": 60},
        )
        api = launch(doc, role="api")
        first = launch(doc, role="worker")
        ids = _submit(api, unique_name, 2)
        wait_for(lambda: inflight(first) >= 2, timeout=10, what="work in flight")
        first.terminate()
        assert first.wait(30) == 0
        assert not [e for e in first.logs() if e.get("msg") == "request answered"]
        assert any("giving back 2" in str(e.get("msg")) for e in first.logs())
        llm.admin.clear_faults()
        launch(doc, role="worker")
        with httpx.Client(base_url=api.url, timeout=10) as client:
            done = wait_for(
                lambda: all_done(client, ids),
                timeout=15,
                what="the given-back requests answered by the other replica",
            )
        assert all(r["status"] == "completed" for r in done.values())
