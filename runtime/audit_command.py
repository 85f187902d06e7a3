"""``pilothouse audit``: check the audit trail's integrity and apply retention.

``pilothouse audit verify [--agent A]`` walks each agent's hash chain and prints
``OK: N records verified``, or the first record that was altered or removed (exit code 1).
``pilothouse audit retention --days N [--agent A]`` deletes records older than N days
(default: the config's ``audit.retentionDays`` with ``--config``, else 30) and moves each
chain's anchor, so what remains still verifies. Talks to PostgreSQL directly.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from pilothouse.runtime import config, errors
from pilothouse.runtime.audit import commands, retention, rows, verification

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("verify", help="verify the hash chains of the decision log")
    v.add_argument("--agent", help="verify one agent only")
    commands.add_connection_arguments(v)
    r = sub.add_parser("retention", help="delete records older than the retention period")
    r.add_argument("--agent", help="one agent only (default: every agent)")
    r.add_argument("--days", type=int, help="retention in days (default: from --config, or 30)")
    commands.add_connection_arguments(r)


async def _verify(args: argparse.Namespace) -> int:
    audit_store = await commands.open_store(args)
    try:
        reports = await verification.verify(audit_store, args.agent)
    finally:
        await audit_store.close()
    total = sum(r.verified for r in reports)
    failed = [r for r in reports if not r.ok]
    for r in failed:
        print(f"FAILED: agent {r.agent}: {r.problem} ({r.verified} record(s) verified before it)")
    if failed:
        return 1
    print(f"OK: {total} records verified ({len(reports)} agent chain(s))")
    return 0


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
