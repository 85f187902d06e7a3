"""The audit schema: migrated once by concurrent replicas, append-only, idempotent appends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from audit_support import decisions, open_store, start_writer

from pilothouse.runtime.audit import chain, rows, schema, store, verification

pytestmark = pytest.mark.integration


async def test_replicas_starting_together_migrate_once(postgres_dsn: str, unique_name: str) -> None:
    stores = [store.AuditStore(postgres_dsn, schema_name=unique_name) for _ in range(6)]
    for s in stores:
        await s.open()
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        expected = [m.version for m in schema.load()]
        assert sorted(v for versions in applied for v in versions) == expected
        assert sorted(await stores[0].applied_migrations()) == expected
    finally:
        for s in stores:
            await s.close()


async def test_decisions_cannot_be_updated_or_deleted(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    s = await open_store(postgres_dsn, unique_name)
    w = await start_writer(s, tmp_path)
    try:
        await w.submit(decisions("a", "req-1"))
    finally:
        await w.close()
        await s.close()
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": unique_name})
    try:
        for sql in (
            "UPDATE audit_decisions SET outcome = 'ok!'",
            "DELETE FROM audit_decisions",
            "TRUNCATE audit_decisions",
        ):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM audit_decisions") == 3
    finally:
        await conn.close()


async def test_writing_the_same_records_twice_stores_them_once(
    postgres_dsn: str, unique_name: str
) -> None:
    s = await open_store(postgres_dsn, unique_name)
    settings = rows.AuditSettings()
    batch = [rows.decision_row(d, settings) for d in decisions("a", "req-1", 4)]
    try:
        first = await s.write(batch)
        again = await s.write(batch + batch[:2])
        assert (first.written, first.duplicates) == (4, 0)
        assert (again.written, again.duplicates) == (0, 6)
        reports = await verification.verify(s)
        assert [(r.agent, r.verified, r.problem) for r in reports] == [("a", 4, None)]
    finally:
        await s.close()


async def test_concurrent_writers_never_fork_a_chain(postgres_dsn: str, unique_name: str) -> None:
    stores = [await open_store(postgres_dsn, unique_name) for _ in range(4)]
    settings = rows.AuditSettings()
    try:

        async def write(n: int, s: store.AuditStore) -> None:
            for i in range(10):
                batch = [rows.decision_row(d, settings) for d in decisions("a", f"r{n}-{i}", 3)]
                await s.write(batch)

        await asyncio.gather(*(write(n, s) for n, s in enumerate(stores)))
        anchor, head = await stores[0].chain_ends("a")
        assert anchor is None
        assert head == chain.ChainPoint(120, head.hash if head else "")
        assert [r.problem for r in await verification.verify(stores[0])] == [None]
    finally:
        for s in stores:
            await s.close()
