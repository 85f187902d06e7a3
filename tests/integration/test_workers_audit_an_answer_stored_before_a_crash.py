"""A worker that died after answering a request but before its audit write returned leaves the
entry pending with the answer stored beside it. The worker that takes the entry over audits that
stored answer (once), acknowledges the entry, and does not run the request again: answered
once, audited once. The dead worker is a consumer that read and answered the entry and never
acknowledged it, which is exactly what a killed pod leaves behind (real Redis, PostgreSQL, and a
real ``pilothouse serve`` worker process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from serving_support import (
    AUDIT_SCHEMA,
    Launcher,
    answered_by_a_dead_consumer,
    audit_counts,
    await_for,
    launcher,
)
from serving_support import runtime_config as base_config

from pilothouse.runtime import config
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

STORED_ANSWER = "the answer stored before the crash"


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


async def test_the_stored_answer_is_audited_once_and_not_run_again(
    launch: Launcher,
    redis_client: aioredis.Redis,
    postgres_dsn: str,
    unique_name: str,
) -> None:
    with MockLLMProcess(seed=3) as llm:
        doc = base_config(unique_name, llm.url, workers={"visibilityTimeoutSeconds": 0.5})
        cfg = config.parse_config(doc)
        rid = f"req-{unique_name}"

        # The worker that died: it read the entry and stored its answer, then nothing more.
        stored = await answered_by_a_dead_consumer(redis_client, cfg, rid, STORED_ANSWER)
        dead, result_json = stored.queue, stored.result_json

        launch(doc, role="worker")

        async def acknowledged() -> bool:
            return await dead.backlog() == 0

        await await_for(acknowledged, within=15, what="the entry acknowledged by the survivor")

        counts = await audit_counts(postgres_dsn, [rid])
        assert counts[rid] == (1, 1, 1)
        conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": AUDIT_SCHEMA})
        try:
            answer = await conn.fetchval(
                "SELECT answer FROM audit_requests WHERE request_id = $1", rid
            )
        finally:
            await conn.close()
        assert answer == STORED_ANSWER
        state = await dead.state(rid)
        assert state is not None
        assert state.result_json == result_json
        assert await dead.answered_audit(stored.entry_id) is None
        # the request was not run again (the runtime only listed the models at start)
        assert llm.admin.stats()["by_path"].get("/v1/chat/completions", 0) == 0
