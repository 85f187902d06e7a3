"""``pilothouse escalations``: list, approve and deny actions waiting for a human.

``list [--agent A] [--status pending]``, ``approve ID --by NAME [--reason ...]``,
``deny ID --by NAME --reason ...``. Talks to PostgreSQL directly (the decision is atomic
there); the runtime notices decided escalations and resumes or answers the request (see
:mod:`pilothouse.runtime.escalations`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json

from pilothouse.runtime import escalations
from pilothouse.runtime.audit import commands, rows

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list escalations, newest first")
    ls.add_argument("--agent", help="one agent only")
    ls.add_argument("--status", choices=escalations.STATUSES, help="one status only")
    ls.add_argument("--limit", type=commands.positive_int, default=100, help="most shown")
    ls.add_argument("--json", action="store_true", help="print JSON")
    commands.add_connection_arguments(ls)
    for name, verb in (("approve", "approve"), ("deny", "deny")):
        p = sub.add_parser(name, help=f"{verb} a pending escalation")
        p.add_argument("escalation_id")
        p.add_argument("--by", default=None, help="who decides (default: the current user)")
        p.add_argument("--reason", required=name == "deny", help="why (shown to the user)")
        commands.add_connection_arguments(p)


def _summary(e: rows.EscalationRow) -> dict[str, object]:
    return {
        "id": e.id,
        "agent": e.agent_id,
        "request_id": e.request_id,
        "action": e.action,
        "tool": e.tool,
        "params": e.params,
        "policy": e.policy,
        "why": e.why,
        "status": e.status,
        "requested_at": e.requested_at.isoformat(),
        "expires_at": e.expires_at.isoformat(),
        "decided_at": e.decided_at.isoformat() if e.decided_at else None,
        "decided_by": e.decided_by,
        "reason": e.reason,
    }


async def _run(args: argparse.Namespace) -> int:
    audit_store = await commands.open_store(args)
    service = escalations.EscalationService(audit_store)
    try:
        if args.action == "list":
            found = await service.list(args.agent, args.status, limit=args.limit)
            if args.json:
                print(json.dumps([_summary(e) for e in found], indent=2, default=str))
            elif not found:
                print("no escalations")
            for e in [] if args.json else found:
                what = f"tool {e.tool}" if e.tool else e.action
                print(
                    f"{e.id}  {e.status:<8}  {e.agent_id}  {what}  {json.dumps(e.params)}"
                    f"  expires {e.expires_at:%Y-%m-%d %H:%M:%S}Z  ({e.policy}: {e.why})"
                )
            return 0
        by = args.by or getpass.getuser()
        if args.action == "approve":
            decided = await service.approve(args.escalation_id, by, args.reason)
        else:
            decided = await service.deny(args.escalation_id, by, args.reason)
        print(f"{decided.id}: {decided.status} by {decided.decided_by}")
        return 0
    finally:
        await audit_store.close()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
