"""What the audit commands share: how they find PostgreSQL, and how they run.

``pilothouse history``, ``pilothouse audit`` and ``pilothouse escalations`` talk to the audit
database directly (no runtime needs to be up): the DSN comes from ``--dsn``, else from the
environment variable ``PILOTHOUSE_POSTGRES_DSN``, else from ``--config FILE`` (a runtime
config's ``audit`` section); ``--schema`` names the schema (``pilothouse`` by default).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta

from pilothouse.runtime import config, errors
from pilothouse.runtime.audit import store

__all__ = ["add_connection_arguments", "open_store", "parse_time", "positive_int"]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $PILOTHOUSE_POSTGRES_DSN)")
    parser.add_argument("--config", help="runtime config file to take the DSN from")
    parser.add_argument("--schema", default=store.DEFAULT_SCHEMA, help="schema of the audit tables")


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--limit``)."""
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _dsn(args: argparse.Namespace) -> str:
    if args.dsn:
        return str(args.dsn)
    if args.config:
        return config.load_config(args.config).audit.resolve_dsn()
    dsn = os.environ.get(config.AuditConfig().dsn_env)
    if not dsn:
        raise errors.UsageError(
            "no database: pass --dsn, set PILOTHOUSE_POSTGRES_DSN, or pass --config FILE"
        )
    return dsn


async def open_store(args: argparse.Namespace) -> store.AuditStore:
    """An opened store for the command's arguments (the caller closes it)."""
    return await store.AuditStore(_dsn(args), schema_name=args.schema, max_connections=2).open()


def parse_time(text: str, now: datetime) -> datetime:
    """``2026-01-31``, ``2026-01-31T12:00:00Z`` or a duration ago: ``90s``, ``15m``, ``2h``,
    ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise errors.UsageError(
            f"time {text!r}: use an ISO date/time or a duration such as 15m, 2h, 7d"
        ) from e
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
