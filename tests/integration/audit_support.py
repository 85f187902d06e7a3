"""Shared pieces of the audit and escalation integration tests: decisions to write, a store
in a schema of its own, a writer with small timeouts, polling with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pilothouse.runtime import config, records
from pilothouse.runtime.audit import rows, store, writers

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def decisions(
    agent: str, request: str, steps: int = 3, *, at: datetime = T0, **kw: object
) -> list[records.AgentDecision]:
    return [
        records.AgentDecision.model_validate(
            {
                "request_id": request,
                "agent_id": agent,
                "step": step,
                "action": "llm_call" if step < steps - 1 else "answer",
                "input": f"question of {request}",
                "action_params": {"model": "mock-llm", "temperature": 0.2},
                "result": {"text": f"answer {step}"},
                "latency_ms": 12.5 + step,
                "cost_usd": 0.00015,
                "input_tokens": 10,
                "output_tokens": 5,
                "model": "mock-llm",
                "timestamp": at + timedelta(milliseconds=step),
                **kw,
            }
        )
        for step in range(steps)
    ]


async def open_store(dsn: str, schema_name: str) -> store.AuditStore:
    s = await store.AuditStore(dsn, schema_name=schema_name, connect_timeout=2.0).open()
    await s.migrate()
    return s


def audit_config(spool: Path, **kw: object) -> config.AuditConfig:
    return config.AuditConfig.model_validate(
        {"spoolDir": str(spool), "flushIntervalSeconds": 2.0, **kw}
    )


async def start_writer(
    s: store.AuditStore, spool: Path, settings: rows.AuditSettings | None = None, **kw: object
) -> writers.AuditWriter:
    return await writers.AuditWriter(
        s, audit_config(spool, **kw), settings or rows.AuditSettings(), backoff=(0.05, 0.5)
    ).start()


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 20.0) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.05)
