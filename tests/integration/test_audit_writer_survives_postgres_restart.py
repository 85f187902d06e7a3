"""PostgreSQL stopped in the middle of 1,000 requests' decision records and started again:
every record is stored exactly once (spooled to disk meanwhile, replayed after), the chain
verifies, and every ``submit`` returned only once its records were durable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from audit_support import decisions, eventually, open_store, start_writer

from pilothouse.runtime import devservers, metrics
from pilothouse.runtime.audit import rows, spool, store, verification, writers

pytestmark = pytest.mark.integration

REQUESTS = 1000
STEPS = 3


async def test_no_record_lost_or_duplicated_across_a_postgres_restart(
    postgres_server: devservers.PostgresServer, unique_name: str, tmp_path: Path
) -> None:
    dsn = postgres_server.dsn
    s = await open_store(dsn, unique_name)
    w = await start_writer(s, tmp_path / "spool", batchSize=200)
    spooled = metrics.AUDIT_RECORDS.labels(outcome="spooled")
    spooled_before = spooled._value.get()
    try:

        async def run(first: int, last: int) -> None:
            sem = asyncio.Semaphore(50)

            async def one(i: int) -> None:
                async with sem:
                    await w.submit(decisions(unique_name, f"req-{i}", STEPS))

            await asyncio.gather(*(one(i) for i in range(first, last)))

        await run(0, 300)
        postgres_server.stop()
        await run(300, 700)  # PostgreSQL down: these go to the spool
        assert not w.healthy
        assert w.spooled > 0
        # Redelivered requests submit their records again: still stored once.
        await run(250, 350)
        postgres_server.start()
        await run(700, REQUESTS)
        await eventually(lambda: _drained(w))
    finally:
        await w.close()
        await s.close()
    assert spooled._value.get() > spooled_before

    conn = await asyncpg.connect(dsn, server_settings={"search_path": unique_name})
    try:
        total = await conn.fetchval("SELECT count(*) FROM audit_decisions")
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT (request_id, step)) FROM audit_decisions"
        )
        requests = await conn.fetchval("SELECT count(DISTINCT request_id) FROM audit_decisions")
    finally:
        await conn.close()
    assert total == distinct == REQUESTS * STEPS
    assert requests == REQUESTS

    s = await open_store(dsn, unique_name)
    try:
        reports = await verification.verify(s)
    finally:
        await s.close()
    assert [(r.verified, r.problem) for r in reports] == [(REQUESTS * STEPS, None)]


async def test_a_submit_cancelled_while_spooling_ends_only_once_its_records_are_on_disk(
    unique_name: str, tmp_path: Path
) -> None:
    # PostgreSQL is unreachable and the buffer holds one record: submissions spool directly.
    dsn = f"postgresql://pilothouse@127.0.0.1:{devservers.free_port()}/nowhere"
    s = await store.AuditStore(dsn, schema_name=unique_name, connect_timeout=1.0).open()
    w = await start_writer(s, tmp_path, maxBufferedRecords=1)
    batch = decisions(unique_name, "cancelled", 5_000)
    current = tmp_path / spool.CURRENT
    try:
        submitting = asyncio.create_task(w.submit(batch))
        deadline = asyncio.get_running_loop().time() + 20
        while not current.exists():  # the spool thread has started writing
            assert asyncio.get_running_loop().time() < deadline, "nothing was spooled"
            await asyncio.sleep(0.001)
        submitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await submitting
        # The caller was let go only after the append (and its fsync) finished.
        assert w.spooled == len(batch)
    finally:
        await w.close()
        await s.close()
    lines = spool.Spool(tmp_path)
    lines.open()
    try:
        stored = [x for path in lines.segments() for chunk in lines.read(path, 1000) for x in chunk]
    finally:
        lines.close()
    assert sorted(x["step"] for x in stored) == list(range(len(batch)))


async def _drained(w: writers.AuditWriter) -> bool:
    return w.healthy and w.spooled == 0


async def test_records_spooled_by_a_process_that_stopped_are_replayed_at_the_next_start(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    # What a writer leaves in its spool when its process dies while PostgreSQL is down.
    left = spool.Spool(tmp_path)
    left.open()
    left.append(
        writers.spool_lines(
            [rows.decision_row(d, rows.AuditSettings()) for d in decisions("a", "left-behind", 2)],
            [],
        )
    )
    left.close()
    s = await open_store(postgres_dsn, unique_name)
    w = await start_writer(s, tmp_path)
    try:
        await eventually(lambda: _drained(w))
        found = await s.decisions_for_request("left-behind")
        assert [r.row.step for r in found] == [0, 1]
    finally:
        await w.close()
        await s.close()


async def test_a_record_postgres_rejects_is_kept_aside_and_does_not_block_the_others(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    good = [rows.decision_row(d, rows.AuditSettings()) for d in decisions("a", "fine", 3)]
    lines = writers.spool_lines(good, [])
    # A line written by hand (not shaped): PostgreSQL cannot store a NUL character.
    poisoned = dict(lines[1], request_id="poisoned", input="a\u0000b")
    left = spool.Spool(tmp_path)
    left.open()
    left.append([lines[0], poisoned, lines[1], lines[2]])
    left.close()
    s = await open_store(postgres_dsn, unique_name)
    w = await start_writer(s, tmp_path)
    try:
        await eventually(lambda: _drained(w))
        assert [r.row.step for r in await s.decisions_for_request("fine")] == [0, 1, 2]
        assert await s.decisions_for_request("poisoned") == []
    finally:
        await w.close()
        await s.close()
    assert _rejected(tmp_path) == ["poisoned"]


def _rejected(folder: Path) -> list[str]:
    [kept] = list(folder.glob("rejected-*.jsonl"))
    return [json.loads(line)["request_id"] for line in kept.read_text().splitlines()]
