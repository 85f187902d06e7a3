"""``pilothouse history``: what an agent did, step by step, from the audit trail.

``pilothouse history REQUEST_ID`` prints the request's decisions as a table (step, action,
latency, cost, outcome, policy, error), the debugging loop of the original write-up;
``pilothouse history --agent A --since 1h`` lists an agent's decisions in a time range;
``--json`` prints the records instead. Talks to PostgreSQL directly (see
:mod:`pilothouse.runtime.audit.commands`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

from pilothouse.runtime import errors
from pilothouse.runtime.audit import commands, history

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request_id", nargs="?", help="the request whose steps to show")
    parser.add_argument("--agent", help="show an agent's decisions instead (with --since)")
    parser.add_argument("--since", default="1h", help="start: ISO time or 15m, 2h, 7d (default 1h)")
    parser.add_argument("--until", help="end (exclusive): ISO time or a duration ago")
    parser.add_argument(
        "--limit", type=commands.positive_int, default=1000, help="most records shown (--agent)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON records")
    commands.add_connection_arguments(parser)


async def _run(args: argparse.Namespace) -> int:
    if bool(args.request_id) == bool(args.agent):
        raise errors.UsageError("give a REQUEST_ID or --agent AGENT (not both)")
    now = datetime.now(UTC)
    audit_store = await commands.open_store(args)
    try:
        if args.request_id:
            found = await history.for_request(audit_store, args.request_id)
        else:
            since = commands.parse_time(args.since, now)
            until = commands.parse_time(args.until, now) if args.until else None
            found = await history.for_agent(audit_store, args.agent, since, until, limit=args.limit)
    finally:
        await audit_store.close()
    if args.json:
        print(json.dumps(history.as_json(found), indent=2, default=str))
        return 0
    if not found:
        what = f"request {args.request_id}" if args.request_id else f"agent {args.agent}"
        print(f"no decisions recorded for {what}")
        return 1
    print(history.table(found, with_request=not args.request_id))
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
