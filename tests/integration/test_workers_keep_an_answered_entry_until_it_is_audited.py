"""An entry answered before its worker died, taken over past ``maxDeliveries`` while its audit
cannot be written anywhere (PostgreSQL stopped and the spool unwritable), is not dead-lettered:
dead-lettering would drop its stored audit payload. It stays pending, with the payload, and a
later delivery audits it once the audit store is back. Real Redis, PostgreSQL and a real
``pilothouse serve`` worker process; the dead worker is a consumer that read and answered the
entry, held its lease while the survivor started, and then stopped renewing it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from serving_support import Launcher, answered_by_a_dead_consumer, audit_counts, await_for, launcher
from serving_support import runtime_config as base_config

from pilothouse.runtime import config, devservers, queue
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

STORED_ANSWER = "the answer stored before the crash"


@pytest.fixture
def launch(
    redis_url: str, postgres_server: devservers.PostgresServer, tmp_path: Path
) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_server.dsn, tmp_path)


async def _times_delivered(client: aioredis.Redis, stream: str, entry_id: str) -> int:
    pending = await client.xpending_range(stream, queue.GROUP, entry_id, entry_id, 1)
    return int(pending[0]["times_delivered"]) if pending else 0


async def test_the_entry_stays_pending_until_its_stored_answer_is_audited(
    launch: Launcher,
    redis_client: aioredis.Redis,
    postgres_server: devservers.PostgresServer,
    unique_name: str,
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"
    with MockLLMProcess(seed=3) as llm:
        doc = base_config(
            unique_name,
            llm.url,
            workers={"visibilityTimeoutSeconds": 0.5, "maxDeliveries": 1},
            audit={"spoolDir": str(spool_dir), "flushIntervalSeconds": 0.2},
        )
        cfg = config.parse_config(doc)
        rid = f"req-{unique_name}"

        # The worker that dies: it reads the entry and stores its answer, then nothing more.
        stored = await answered_by_a_dead_consumer(redis_client, cfg, rid, STORED_ANSWER)
        dead, entry_id = stored.queue, stored.entry_id
        result_json, audit = stored.result_json, stored.audit

        async def hold_lease() -> None:
            while True:
                await dead.renew([entry_id])
                await asyncio.sleep(0.1)

        holder = asyncio.create_task(hold_lease())
        try:
            # In threads: the lease is renewed meanwhile, so the survivor cannot take it yet.
            await asyncio.to_thread(launch, doc, role="worker")
            # The audit cannot be written anywhere: PostgreSQL stopped, and the spool's
            # segment path taken by a folder (unwritable even for root).
            await asyncio.to_thread(postgres_server.stop)
            (spool_dir / "current.jsonl").mkdir()
        finally:
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holder
        try:

            async def tried_again() -> bool:
                return await _times_delivered(redis_client, dead.stream, entry_id) >= 3

            # Delivery 2 found the audit impossible and left the entry; delivery 3 took it again.
            await await_for(tried_again, within=60, what="the entry delivered a third time")
            assert await dead.dead_letters() == []
            assert await dead.answered_audit(entry_id) == audit
        finally:
            (spool_dir / "current.jsonl").rmdir()
            await asyncio.to_thread(postgres_server.start)

        async def audited() -> bool:
            try:
                counts = await audit_counts(postgres_server.dsn, [rid])
            except asyncpg.UndefinedTableError:  # a fresh database: migrated on the first write
                return False
            return counts[rid] == (1, 1, 1)

        await await_for(audited, within=60, what="the stored answer audited")

        async def settled() -> bool:
            return await dead.answered_audit(entry_id) is None and await dead.backlog() == 0

        await await_for(settled, within=15, what="the entry settled after its audit")
        state = await dead.state(rid)
        assert state is not None
        assert state.result_json == result_json  # the caller's answer stands
        # the request was not run again (the runtime only listed the models at start)
        assert llm.admin.stats()["by_path"].get("/v1/chat/completions", 0) == 0
