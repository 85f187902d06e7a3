"""``pilothouse audit``: check the audit trail's integrity and apply retention.

``pilothouse audit verify [--agent A]`` walks each agent's hash chain and prints
``OK: N records verified``, or the first record that was altered or removed (exit code 1).
With ``--config`` (the agent's runtime config: its Redis, namespace and agent) it also checks
that every request the work queue answered has its records: the queue's ledger of answered
requests against the stored summaries, leaving out answers younger than ``--settle-seconds``
and entries still pending (their records are on their way); missing ones fail (exit code 1).
``pilothouse audit retention --days N [--agent A]`` deletes records older than N days
(default: the config's ``audit.retentionDays`` with ``--config``, else 30) and moves each
chain's anchor, so what remains still verifies. Talks to PostgreSQL directly.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Final

import redis.asyncio as aioredis

from pilothouse.runtime import config, errors, queue
from pilothouse.runtime.audit import commands, retention, rows, verification
from pilothouse.runtime.audit import store as store_module

DEFAULT_SETTLE_SECONDS: Final = 60.0
"""Answers younger than this are not checked by ``verify --config`` (records on their way)."""
SHOWN_MISSING: Final = 20
"""How many missing request ids ``verify`` prints."""

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("verify", help="verify the hash chains of the decision log")
    v.add_argument("--agent", help="verify one agent only")
    v.add_argument(
        "--settle-seconds",
        type=float,
        default=DEFAULT_SETTLE_SECONDS,
        help="with --config: answers younger than this are not checked for their records",
    )
    commands.add_connection_arguments(v)
    r = sub.add_parser("retention", help="delete records older than the retention period")
    r.add_argument("--agent", help="one agent only (default: every agent)")
    r.add_argument("--days", type=int, help="retention in days (default: from --config, or 30)")
    commands.add_connection_arguments(r)


async def _verify(args: argparse.Namespace) -> int:
    cfg = config.load_config(args.config) if args.config else None
    audit_store = await commands.open_store(args)
    try:
        reports = await verification.verify(audit_store, args.agent)
        complete = await _completeness(audit_store, cfg, args.settle_seconds) if cfg else None
    finally:
        await audit_store.close()
    total = sum(r.verified for r in reports)
    failed = [r for r in reports if not r.ok]
    for r in failed:
        print(f"FAILED: agent {r.agent}: {r.problem} ({r.verified} record(s) verified before it)")
    if complete is not None and not complete.ok:
        shown = ", ".join(complete.missing[:SHOWN_MISSING])
        more = len(complete.missing) - SHOWN_MISSING
        print(
            f"FAILED: agent {complete.agent}: {len(complete.missing)} of {complete.checked} "
            f"answered request(s) have no audit record: {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    if failed or (complete is not None and not complete.ok):
        return 1
    print(f"OK: {total} records verified ({len(reports)} agent chain(s))")
    if complete is not None:
        print(
            f"OK: every one of {complete.checked} answered request(s) of agent {complete.agent} "
            f"has its audit record ({complete.not_checked} newer or still pending not checked)"
        )
    return 0


async def _completeness(
    audit_store: store_module.AuditStore, cfg: config.RuntimeConfig, settle_seconds: float
) -> verification.CompletenessReport:
    client = aioredis.Redis.from_url(cfg.redis.resolve_url())
    try:
        answered, not_checked = await queue.answered_requests(
            client, cfg, settled_before=time.time() - settle_seconds
        )
    except errors.DependencyUnavailable as e:
        raise errors.UsageError(f"cannot read the answered requests from Redis: {e}") from e
    finally:
        await client.aclose()
    return await verification.check_completeness(audit_store, cfg.agent, answered, not_checked)


def _days(args: argparse.Namespace) -> int:
    if args.days is not None:
        if args.days < 1:
            raise errors.UsageError("--days must be at least 1")
        return int(args.days)
    if args.config:
        return rows.AuditSettings.from_config(config.load_config(args.config)).retention_days
    return config.AuditConfig().retention_days


async def _retention(args: argparse.Namespace) -> int:
    days = _days(args)
    audit_store = await commands.open_store(args)
    try:
        agents = [args.agent] if args.agent else await audit_store.chain_agents()
        now = datetime.now(UTC)
        for agent in agents:
            report = await retention.run_retention(audit_store, agent, days, now)
            print(
                f"{agent}: deleted {report.decisions_deleted} decision(s) and "
                f"{report.other_deleted} other record(s) older than {report.cutoff.isoformat()}"
            )
    finally:
        await audit_store.close()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "verify":
        return asyncio.run(_verify(args))
    return asyncio.run(_retention(args))
