"""``pilothouse history`` (the real command, as a subprocess) prints a request's steps as a
table or JSON, lists an agent's decisions in a time range, and says so when there are none.
The audit commands answer a database they cannot reach, or a bad ``--limit``, with one line
naming the problem, never a traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_support import decisions, open_store, start_writer

from pilothouse.runtime import cli, devservers

pytestmark = pytest.mark.integration


def _history(dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.runtime.cli", "history", *args, "--dsn", dsn,
         "--schema", schema],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_history_by_request_and_by_agent(
    postgres_dsn: str, unique_name: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    s = await open_store(postgres_dsn, unique_name)
    w = await start_writer(s, tmp_path)
    try:
        await w.submit(
            decisions("support", "req-a", 3, at=now - timedelta(minutes=30))
            + decisions("support", "req-old", 2, at=now - timedelta(days=2))
        )
        denied = decisions("support", "req-b", 1, at=now - timedelta(minutes=5))[0]
        await w.submit(
            [denied.model_copy(update={"outcome": "denied", "policy": "guard", "error": "no"})]
        )
    finally:
        await w.close()
        await s.close()

    table = await asyncio.to_thread(_history, postgres_dsn, unique_name, "req-a")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "step",
        "action",
        "latency",
        "ms",
        "cost",
        "usd",
        "outcome",
        "policy",
        "error",
    ]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["0", "llm_call"],
        ["1", "llm_call"],
        ["2", "answer"],
    ]
    assert lines[1].split()[2:5] == ["12.5", "0.000150", "ok"]

    as_json = await asyncio.to_thread(_history, postgres_dsn, unique_name, "req-a", "--json")
    records = json.loads(as_json.stdout)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert records[0]["action_params"] == {"model": "mock-llm", "temperature": 0.2}
    assert all(len(r["hash"]) == 64 for r in records)

    recent = await asyncio.to_thread(
        _history, postgres_dsn, unique_name, "--agent", "support", "--since", "1h"
    )
    assert recent.returncode == 0, recent.stderr
    rows = [line.split() for line in recent.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["req-a", "req-a", "req-a", "req-b"]
    assert rows[-1][5:] == ["denied", "guard", "no"]

    missing = await asyncio.to_thread(_history, postgres_dsn, unique_name, "req-nope")
    assert missing.returncode == 1
    assert "no decisions recorded for request req-nope" in missing.stdout

    both = await asyncio.to_thread(_history, postgres_dsn, unique_name, "req-a", "--agent", "x")
    assert both.returncode == 2
    assert "not both" in both.stderr


@pytest.mark.parametrize(
    "command", [["history", "req-a"], ["escalations", "list"], ["audit", "verify"]]
)
def test_an_unreachable_database_is_one_line_not_a_traceback(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"postgresql://pilothouse@127.0.0.1:{devservers.free_port()}/nowhere"
    code = cli.main([*command, "--dsn", dsn])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"pilothouse {command[0]}: PostgreSQL unavailable: ")
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", [["history", "--agent", "support"], ["escalations", "list"]])
def test_the_limit_must_be_a_positive_number(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--limit", "0", "--dsn", "postgresql://unused/db"])
    assert exited.value.code == 2
    assert "--limit: must be at least 1, not 0" in capsys.readouterr().err
