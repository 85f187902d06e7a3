"""Shared pieces of the serving, queue, worker and observability integration tests.

Runtime configs with small timeouts (so a test takes seconds), the environment a
``pilothouse serve`` process needs to find the test's Redis and PostgreSQL, a launcher that
always stops what it started, polling with a deadline, and PostgreSQL counts of what the audit
trail holds for a set of request ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import redis.asyncio as aioredis

from pilothouse.runtime import config, envelopes, queue, records, requests, testing

T = TypeVar("T")

AUDIT_SCHEMA = "pilothouse"
"""Schema the runtime processes write the audit trail to (the store's default)."""


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def runtime_config(agent: str, llm_url: str, **overrides: Any) -> dict[str, Any]:
    """A runtime config for tests: the mock LLM, short timeouts, a quick audit writer."""
    base: dict[str, Any] = {
        "agent": agent,
        "model": {"endpoint": llm_url, "name": "mock", "timeoutSeconds": 5},
        "reliability": {
            "retry": {"attempts": 2, "initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.2},
            "requestTimeoutSeconds": 15,
        },
        "workers": {
            "concurrency": 8,
            "visibilityTimeoutSeconds": 2,
            "maxDeliveries": 3,
            "shutdownGraceSeconds": 10,
        },
        "audit": {"flushIntervalSeconds": 2},
    }
    return _merge(base, overrides)


def runtime_env(redis_url: str, postgres_dsn: str) -> dict[str, str]:
    return {"PILOTHOUSE_REDIS_URL": redis_url, "PILOTHOUSE_POSTGRES_DSN": postgres_dsn}


class Launcher:
    """Starts ``pilothouse serve`` processes for one test and stops them all afterwards."""

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.started: list[testing.RuntimeProcess] = []

    def __call__(
        self, cfg: Mapping[str, Any], *, role: str = "all", wait_ready: bool = True
    ) -> testing.RuntimeProcess:
        rt = testing.RuntimeProcess(
            cfg, role=role, env=self.env, workdir=self.workdir / f"runtime-{len(self.started)}"
        )
        self.started.append(rt)
        return rt.start(wait_ready=wait_ready)

    def close(self) -> None:
        for rt in self.started:
            rt.close()


def launcher(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    """Body of a ``launch`` fixture."""
    launch = Launcher(runtime_env(redis_url, postgres_dsn), tmp_path)
    try:
        yield launch
    finally:
        launch.close()


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


async def await_for(
    check: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.05
) -> T:
    """The async :func:`wait_for`."""
    timeout = within
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def results_done(client: httpx.Client, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The results of those requests that are answered, by request id."""
    out = {}
    for rid in request_ids:
        r = client.get(f"/v1/requests/{rid}")
        if r.status_code == 200 and r.json()["state"] == "done":
            out[rid] = r.json()["result"]
    return out


def all_done(client: httpx.Client, request_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    """The results of all those requests, or None while one of them is unanswered."""
    done = results_done(client, request_ids)
    return done if len(done) == len(request_ids) else None


async def audit_counts(dsn: str, request_ids: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """Per request id: (summary rows, decision rows, distinct decision steps) in PostgreSQL."""
    ids = list(request_ids)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": AUDIT_SCHEMA})
    try:
        summaries = await conn.fetch(
            "SELECT request_id, count(*) AS n FROM audit_requests "
            "WHERE request_id = ANY($1::text[]) GROUP BY request_id",
            ids,
        )
        decisions = await conn.fetch(
            "SELECT request_id, count(*) AS n, count(DISTINCT step) AS steps "
            "FROM audit_decisions WHERE request_id = ANY($1::text[]) GROUP BY request_id",
            ids,
        )
    finally:
        await conn.close()
    out = dict.fromkeys(ids, (0, 0, 0))
    for r in summaries:
        out[r["request_id"]] = (r["n"], 0, 0)
    for r in decisions:
        out[r["request_id"]] = (out[r["request_id"]][0], r["n"], r["steps"])
    return out


@dataclass(frozen=True)
class DeadConsumerAnswer:
    """An entry a worker read and answered (answer and audit payload stored with it), before
    dying without auditing or acknowledging it."""

    queue: queue.WorkQueue
    entry_id: str
    result_json: bytes
    audit: bytes


async def answered_by_a_dead_consumer(
    redis_client: aioredis.Redis, cfg: config.RuntimeConfig, request_id: str, answer: str
) -> DeadConsumerAnswer:
    """Enqueue a request, read it as consumer ``pod-dead`` and store its answer, nothing more."""
    dead = queue.WorkQueue(redis_client, cfg, consumer="pod-dead")
    await dead.ensure_group()
    request = requests.AgentRequest(input="What is 2+2?", request_id=request_id)
    await dead.enqueue(envelopes.Envelope(request, queue.now()))
    [delivery] = await dead.read(1, block_ms=100)
    result = requests.AgentResult(
        request_id=request_id, agent_id=cfg.agent, status="completed", answer=answer
    )
    decision = records.AgentDecision(
        request_id=request_id,
        agent_id=cfg.agent,
        step=0,
        action="answer",
        result=answer,
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    result_json = result.model_dump_json().encode()
    audit = envelopes.encode_audit(request, result_json, [decision])
    completion = envelopes.Completion(delivery.entry_id, request_id, result_json, None, audit)
    assert await dead.answer([completion]) == [1]
    return DeadConsumerAnswer(dead, delivery.entry_id, result_json, audit)
