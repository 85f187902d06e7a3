"""Retention: delete audit records older than ``retentionDays`` without breaking the chain.

Decisions are deleted as a *prefix* of each agent's chain: every record up to the newest one
such that it and all before it are older than the cutoff (a young record keeps everything
after it, so an old record replayed late from the spool waits its turn). The hash of the last
deleted record becomes the agent's *anchor* (``audit_chain_anchors``): verification starts
there, so what remains still verifies. Deletion runs in transactions of at most
``batch_records`` records, each setting ``pilothouse.audit_retention`` so the append-only
triggers let it through. Request summaries and decided escalations older than the cutoff go
too. Called periodically by :class:`Housekeeper` (retention + escalation expiry) and by
``pilothouse audit retention``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pilothouse.runtime import periodic
from pilothouse.runtime.audit import store

__all__ = ["Housekeeper", "RetentionReport", "cutoff", "run_retention"]

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 10_000
DEFAULT_INTERVAL: Final = 3600.0


def cutoff(now: datetime, days: int) -> datetime:
    """Records strictly older than this are past retention."""
    return now - timedelta(days=days)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    agent: str
    decisions_deleted: int
    other_deleted: int
    cutoff: datetime


async def run_retention(
    audit_store: store.AuditStore,
    agent: str,
    days: int,
    now: datetime,
    *,
    batch_records: int = DEFAULT_BATCH,
) -> RetentionReport:
    """Delete an agent's records older than ``days`` days before ``now``."""
    limit = cutoff(now, days)
    total = 0
    while True:
        deleted = await audit_store.prune_chain(agent, limit, batch_records)
        total += deleted
        if deleted < batch_records:
            break
    other = await audit_store.prune_requests(agent, limit)
    return RetentionReport(agent, total, other, limit)


class Housekeeper(periodic.Periodic):
    """Runs ``job(now)`` every ``interval`` seconds in the background (retention and
    escalation expiry for the agent); failures are logged and retried at the next tick."""

    def __init__(
        self,
        job: Callable[[datetime], Awaitable[object]],
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(
            "audit-housekeeper",
            lambda: job(datetime.fromtimestamp(clock(), UTC)),
            interval=interval,
        )
