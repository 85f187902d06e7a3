"""``pilothouse audit verify`` (the real command, as a subprocess) finds a row altered or
deleted directly in PostgreSQL, passes an untouched log, and still passes after retention
deleted the oldest records."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from audit_support import decisions, open_store, start_writer

pytestmark = pytest.mark.integration


def _cli(dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.runtime.cli", *args, "--dsn", dsn, "--schema", schema],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _cli_async(dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_cli, dsn, schema, *args)


async def _write(
    dsn: str, schema: str, spool: Path, agent: str, *, old: int, young: int, tag: str = "new"
) -> None:
    now = datetime.now(UTC)
    s = await open_store(dsn, schema)
    w = await start_writer(s, spool)
    try:
        for i in range(old):
            await w.submit(
                decisions(agent, f"{agent}-old-{i}", 3, at=now - timedelta(days=60, minutes=-i))
            )
        for i in range(young):
            await w.submit(
                decisions(agent, f"{agent}-{tag}-{i}", 3, at=now - timedelta(hours=1, minutes=-i))
            )
    finally:
        await w.close()
        await s.close()


async def _tamper(dsn: str, schema: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        # What an attacker with superuser rights could do: switch the triggers off.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_an_untouched_log_verifies(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    await _write(postgres_dsn, unique_name, tmp_path, "clean", old=0, young=5)
    done = await _cli_async(postgres_dsn, unique_name, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 15 records verified")


async def test_an_altered_row_is_found(postgres_dsn: str, unique_name: str, tmp_path: Path) -> None:
    await _write(postgres_dsn, unique_name, tmp_path, "victim", old=0, young=5)
    await _tamper(
        postgres_dsn,
        unique_name,
        "UPDATE audit_decisions SET cost_usd = 0 WHERE request_id = 'victim-new-2' AND step = 1",
    )
    done = await _cli_async(postgres_dsn, unique_name, "audit", "verify", "--agent", "victim")
    assert done.returncode == 1
    assert "FAILED: agent victim" in done.stdout
    assert "#8 (request victim-new-2, step 1) was altered" in done.stdout


async def test_a_deleted_row_is_found(postgres_dsn: str, unique_name: str, tmp_path: Path) -> None:
    await _write(postgres_dsn, unique_name, tmp_path, "victim", old=0, young=5)
    await _tamper(
        postgres_dsn,
        unique_name,
        "DELETE FROM audit_decisions WHERE request_id = 'victim-new-1' AND step = 0",
    )
    done = await _cli_async(postgres_dsn, unique_name, "audit", "verify")
    assert done.returncode == 1
    assert "record(s) #4 were removed" in done.stdout


async def test_the_newest_rows_deleted_are_found(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    await _write(postgres_dsn, unique_name, tmp_path, "victim", old=0, young=5)
    await _tamper(
        postgres_dsn, unique_name, "DELETE FROM audit_decisions WHERE request_id = 'victim-new-4'"
    )
    done = await _cli_async(postgres_dsn, unique_name, "audit", "verify")
    assert done.returncode == 1
    assert "#13..#15 at the end of the chain were removed" in done.stdout


async def test_retention_deletes_old_rows_and_the_rest_still_verifies(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    await _write(postgres_dsn, unique_name, tmp_path, "kept", old=4, young=3)
    done = await _cli_async(postgres_dsn, unique_name, "audit", "retention", "--days", "30")
    assert done.returncode == 0, done.stderr
    assert "kept: deleted 12 decision(s)" in done.stdout
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": unique_name})
    try:
        left = await conn.fetch("SELECT DISTINCT request_id FROM audit_decisions ORDER BY 1")
    finally:
        await conn.close()
    assert [r[0] for r in left] == ["kept-new-0", "kept-new-1", "kept-new-2"]
    verified = await _cli_async(postgres_dsn, unique_name, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("OK: 9 records verified")
    # Records written after retention extend the chain from where it stands.
    await _write(postgres_dsn, unique_name, tmp_path, "kept", old=0, young=1, tag="later")
    again = await _cli_async(postgres_dsn, unique_name, "audit", "verify")
    assert again.stdout.startswith("OK: 12 records verified")
