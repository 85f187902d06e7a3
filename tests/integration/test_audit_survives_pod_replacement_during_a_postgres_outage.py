"""PostgreSQL down, requests answered (their audit records wait in the local spools), then both
``pilothouse serve`` processes replaced the way Kubernetes does it — one SIGTERM, one SIGKILL,
each replacement with an empty spool folder — and PostgreSQL back: every audit record arrives,
once. The queue entries stay unacknowledged in Redis until PostgreSQL has their records, so any
replica can finish the job; ``pilothouse audit verify --config`` then finds every answered
request audited, and reports an answered request with no record as missing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from serving_support import Launcher, audit_counts, await_for, runtime_config, runtime_env

from pilothouse.runtime import config, devservers, queue, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

REQUESTS = 30


@pytest.fixture
def launch(
    redis_url: str, postgres_server: devservers.PostgresServer, tmp_path: Path
) -> Iterator[Launcher]:
    launch = Launcher(runtime_env(redis_url, postgres_server.dsn), tmp_path)
    try:
        yield launch
    finally:
        launch.close()
        postgres_server.start()  # whatever happened, the session's PostgreSQL runs again


def _verify(
    rt: testing.RuntimeProcess, redis_url: str, dsn: str
) -> subprocess.CompletedProcess[str]:
    command = ["audit", "verify", "--config", str(rt.config_file), "--dsn", dsn]
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.runtime.cli", *command, "--settle-seconds", "0"],
        env={**os.environ, "PILOTHOUSE_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_no_audit_record_is_lost_when_pods_are_replaced_during_an_outage(
    launch: Launcher,
    postgres_server: devservers.PostgresServer,
    redis_url: str,
    unique_name: str,
) -> None:
    dsn = postgres_server.dsn
    with MockLLMProcess(seed=31) as llm:
        doc = runtime_config(unique_name, llm.url, audit={"flushIntervalSeconds": 1})
        cfg = config.parse_config(doc)
        first, second = launch(doc), launch(doc)
        async with httpx.AsyncClient(timeout=60) as client:
            # The schema exists and the processes have written once.
            warm = await client.post(
                f"{first.url}/v1/requests?wait=20", json={"input": "What is 2+2?"}
            )
            assert warm.status_code == 200
            redis = aioredis.Redis.from_url(redis_url)

            async def acknowledged() -> bool:
                return await queue.backlog(redis, cfg) == 0

            await await_for(acknowledged, within=30, what="the first request acknowledged")

            postgres_server.stop()
            ids = [f"req-{unique_name}-{i}" for i in range(REQUESTS)]
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{(first, second)[i % 2].url}/v1/requests?wait=30",
                        json={"input": "What is 2+2?", "request_id": rid},
                    )
                    for i, rid in enumerate(ids)
                )
            )
            assert [r.status_code for r in responses] == [200] * REQUESTS
            try:
                # Answered, but not acknowledged: Redis keeps them until PostgreSQL has them.
                assert await queue.backlog(redis, cfg) == REQUESTS

                # Replaced: one drained (SIGTERM), one killed; the new ones have empty spools.
                first.terminate()
                assert first.wait() == 0  # what it held is in Redis: handed off, a clean exit
                assert any("handing off" in str(e) for e in first.logs())
                second.kill()
                launch(doc)
                survivor = launch(doc)

                postgres_server.start()

                async def all_audited() -> dict[str, tuple[int, int, int]] | None:
                    counts = await audit_counts(dsn, ids)
                    return counts if all(c[0] for c in counts.values()) else None

                counts = await await_for(all_audited, within=90, what="every record to arrive")
                assert {rid: c[0] for rid, c in counts.items()} == dict.fromkeys(ids, 1)
                assert all(c[1] == c[2] > 0 for c in counts.values())
                await await_for(acknowledged, within=30, what="every entry acknowledged")

                verified = _verify(survivor, redis_url, dsn)
                assert verified.returncode == 0, verified.stdout + verified.stderr
                assert "answered request(s)" in verified.stdout

                # An answer with no record (lost, as a spool used to lose them) is reported.
                await redis.xadd(queue.answered_key(cfg), {"r": "req-lost-1", "e": "0-1"})
                missing = _verify(survivor, redis_url, dsn)
            finally:
                await redis.aclose()
    assert missing.returncode == 1
    assert "have no audit record: req-lost-1" in missing.stdout
