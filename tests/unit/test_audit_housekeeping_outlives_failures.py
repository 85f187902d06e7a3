"""The housekeeper (retention and escalation expiry in the background) keeps its schedule
whatever one run of its job raises: the failure is logged and the job runs again at the next
tick. The job here is a plain function; no I/O."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import pytest

from pilothouse.runtime import errors, periodic
from pilothouse.runtime.audit import retention

NOW = 1_750_000_000.0


async def test_a_failing_run_is_logged_and_the_next_tick_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[datetime] = []

    async def job(now: datetime) -> None:
        runs.append(now)
        if len(runs) == 1:
            raise ValueError("a bug in one run")
        if len(runs) == 2:
            raise errors.DependencyUnavailable("PostgreSQL unavailable")

    keeper = retention.Housekeeper(job, interval=0.01, clock=lambda: NOW)
    keeper.start()
    try:
        deadline = time.monotonic() + 10
        while len(runs) < 3:
            assert time.monotonic() < deadline, f"the housekeeper stopped after {len(runs)} run(s)"
            await asyncio.sleep(0.01)
    finally:
        await keeper.close()
    assert runs[0] == datetime.fromtimestamp(NOW, UTC)
    bug, outage = [r for r in caplog.records if r.name == periodic.__name__][:2]
    assert bug.levelno == logging.ERROR  # with the traceback: it is a bug
    assert bug.exc_info is not None
    assert str(bug.exc_info[1]) == "a bug in one run"
    assert outage.levelno == logging.WARNING
    assert "PostgreSQL unavailable" in outage.getMessage()
