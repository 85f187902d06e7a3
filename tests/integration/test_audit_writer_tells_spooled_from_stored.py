"""The audit writer says where records are: ``hand_over`` answers None once they are in
PostgreSQL, or a future that is done when the spool's replay wrote them (so the worker
acknowledges its queue entry only then); records that exist only in the spool when the writer
closes are reported as stranded (error log, metric, ``stranded``), records whose caller keeps a
copy are not (real PostgreSQL, stopped and started)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from audit_support import decisions, open_store, start_writer

from pilothouse.runtime import devservers, metrics, requests
from pilothouse.runtime.audit import store

pytestmark = pytest.mark.integration


def _finished(rid: str, agent: str) -> tuple[requests.AgentRequest, requests.AgentResult]:
    request = requests.AgentRequest(request_id=rid, input="What is 2+2?")
    result = requests.AgentResult(request_id=rid, agent_id=agent, status="completed", answer="4")
    return request, result


async def test_a_hand_over_is_done_only_once_postgres_has_the_records(
    postgres_server: devservers.PostgresServer, unique_name: str, tmp_path: Path
) -> None:
    s = await open_store(postgres_server.dsn, unique_name)
    w = await start_writer(s, tmp_path / "spool")
    try:
        stored = await w.hand_over(
            *_finished("req-up", unique_name), decisions(unique_name, "req-up", 2)
        )
        assert stored is None  # written: nothing to wait for

        postgres_server.stop()
        try:
            replayed = await w.hand_over(
                *_finished("req-down", unique_name), decisions(unique_name, "req-down", 2)
            )
            assert replayed is not None
            assert not w.healthy
            assert w.spooled == 3
            assert not replayed.done()  # only in the spool
        finally:
            postgres_server.start()
        await asyncio.wait_for(replayed, 60)
        assert [r.row.step for r in await s.decisions_for_request("req-down")] == [0, 1]
        assert len(await s.requests_for("req-down")) == 1
    finally:
        await w.close()
        await s.close()
    assert w.stranded == 0


async def test_records_only_in_the_spool_at_close_are_reported_stranded(
    unique_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = f"postgresql://pilothouse@127.0.0.1:{devservers.free_port()}/nowhere"
    s = await store.AuditStore(dsn, schema_name=unique_name, connect_timeout=1.0).open()
    w = await start_writer(s, tmp_path)
    stranded = metrics.AUDIT_STRANDED._value.get()
    try:
        kept_elsewhere = await w.hand_over(
            *_finished("req-backed", unique_name), decisions(unique_name, "req-backed", 2)
        )
        assert kept_elsewhere is not None
        await w.submit_result(
            *_finished("req-alone", unique_name), decisions(unique_name, "req-alone", 4)
        )
    finally:
        with caplog.at_level(logging.WARNING, logger="pilothouse.runtime.audit.writers"):
            await w.close()
        await s.close()
    assert w.stranded == 5  # four decisions and the summary of req-alone
    assert metrics.AUDIT_STRANDED._value.get() == stranded + 5
    assert kept_elsewhere.cancelled()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("5 record(s) exist only in the local spool" in r.getMessage() for r in errors)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("3 spooled record(s)" in r.getMessage() for r in warnings)
