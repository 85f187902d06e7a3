"""The audit store: the only module that talks to PostgreSQL.

Why one module: every SQL statement of the audit trail is here, behind methods that speak in
rows (:mod:`pilothouse.runtime.audit.rows`), so the writer, the history queries, verification,
retention and the escalation service never see a connection, and PostgreSQL's errors are
wrapped once: connection trouble becomes :class:`errors.DependencyUnavailable` (the writer
spools and retries), anything else :class:`AuditStoreError`.

Objects live in one schema (``pilothouse`` by default; tests use one each), set as the
``search_path`` of every pooled connection. The pool connects lazily, so a runtime starts
while PostgreSQL is down; migrations run on the first successful use (:meth:`migrate`).

Appending decisions (:meth:`write`) is one transaction: lock the heads of the agents'
chains (``SELECT ... FOR UPDATE`` in agent order, so concurrent writers queue per agent and
never deadlock), drop records already stored (idempotent replay: ``(agent, request, step)``
is unique; request ids are the callers', so two agents may share one), link the rest
(:func:`chain.link`), ``COPY`` them in, move the heads. Request summaries go in the same
transaction with ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from pilothouse.runtime import errors
from pilothouse.runtime.audit import chain, rows, schema

__all__ = ["DEFAULT_SCHEMA", "AuditStore", "AuditStoreError", "WriteOutcome"]

DEFAULT_SCHEMA: Final = "pilothouse"
RETENTION_SETTING: Final = "pilothouse.audit_retention"
_IDENT: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock: retry
)


class AuditStoreError(errors.RuntimeFailure):
    """PostgreSQL rejected an audit statement (not a connection problem)."""


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    written: int
    duplicates: int


_INSERT_REQUEST: Final = (
    f"INSERT INTO audit_requests ({', '.join(rows.REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(rows.REQUEST_COLUMNS) + 1))}) "
    "ON CONFLICT (agent_id, request_id, attempt) DO NOTHING"
)
_INSERT_ESCALATION: Final = (
    f"INSERT INTO audit_escalations ({', '.join(rows.ESCALATION_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(rows.ESCALATION_COLUMNS) + 1))}) "
    "ON CONFLICT DO NOTHING RETURNING *"
)


class AuditStore:
    """A pool of connections to the audit schema. ``open()`` before use, ``close()`` after."""

    def __init__(
        self,
        dsn: str,
        *,
        schema_name: str = DEFAULT_SCHEMA,
        max_connections: int = 4,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
    ) -> None:
        if not _IDENT.match(schema_name):
            raise errors.ConfigError(f"audit schema {schema_name!r}: use [a-z_][a-z0-9_]*")
        self.dsn = dsn
        self.schema = schema_name
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._migrated = False
        self._migrate_lock = asyncio.Lock()

    async def open(self) -> AuditStore:
        """Create the pool (no connection is made until one is needed)."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=self._max,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings={"search_path": self.schema},
            )
        return self

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except (TimeoutError, *_UNAVAILABLE):
                pool.terminate()

    async def __aenter__(self) -> AuditStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _conn(self, *, migrate: bool = True) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise errors.PilothouseError("AuditStore used before open()")
        if migrate and not self._migrated:
            await self.migrate()
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as e:
            raise errors.DependencyUnavailable(f"PostgreSQL unavailable: {e}") from e
        except asyncpg.PostgresError as e:
            raise AuditStoreError(f"PostgreSQL rejected an audit statement: {e}") from e

    # ------------------------------------------------------------------------ migrations

    async def migrate(self) -> list[int]:
        """Apply pending migrations (under an advisory lock); the versions applied."""
        async with self._migrate_lock:
            if self._migrated:
                return []
            applied: list[int] = []
            async with self._conn(migrate=False) as conn:
                lock_key = f"pilothouse.audit.migrate:{self.schema}"
                await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock_key)
                try:
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                    for m in schema.load():
                        if m.version in done:
                            continue
                        async with conn.transaction():
                            await conn.execute(m.sql)
                            await conn.execute(
                                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                m.version,
                                m.name,
                            )
                        applied.append(m.version)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
            self._migrated = True
            return applied

    async def applied_migrations(self) -> list[int]:
        async with self._conn() as conn:
            return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]

    # ------------------------------------------------------------------------ writing

    async def write(
        self, decisions: Sequence[rows.DecisionRow], requests: Sequence[rows.RequestRow] = ()
    ) -> WriteOutcome:
        """Append decisions (chained) and request summaries, idempotently, in one transaction."""
        unique: dict[tuple[str, str, int], rows.DecisionRow] = {}
        for d in decisions:
            unique.setdefault(d.key, d)
        async with self._conn() as conn, conn.transaction():
            written = 0
            if unique:
                written = await self._append(conn, list(unique.values()))
            if requests:
                await conn.executemany(_INSERT_REQUEST, [rows.request_values(r) for r in requests])
        return WriteOutcome(written, len(decisions) - written)

    async def _append(self, conn: asyncpg.Connection, batch: list[rows.DecisionRow]) -> int:
        agents = sorted({d.agent_id for d in batch})
        heads = await self._lock_heads(conn, agents)
        if len(heads) < len(agents):  # an agent's first records: create its head, then lock
            await conn.execute(
                "INSERT INTO audit_chain_heads (agent_id, seq, hash)"
                " SELECT a, 0, $2 FROM unnest($1::text[]) AS a ON CONFLICT DO NOTHING",
                agents,
                chain.GENESIS,
            )
            heads = await self._lock_heads(conn, agents)
        stored = {
            (r[0], r[1], r[2])
            for r in await conn.fetch(
                "SELECT d.agent_id, d.request_id, d.step FROM audit_decisions d"
                " JOIN unnest($1::text[], $2::text[], $3::int[]) AS k(a, r, s)"
                " ON d.agent_id = k.a AND d.request_id = k.r AND d.step = k.s",
                [d.agent_id for d in batch],
                [d.request_id for d in batch],
                [d.step for d in batch],
            )
        }
        linked: list[chain.LinkedRow] = []
        for agent in agents:
            fresh = [d for d in batch if d.agent_id == agent and d.key not in stored]
            if fresh:
                linked += chain.link(heads[agent], fresh)
        if not linked:
            return 0
        await conn.copy_records_to_table(
            "audit_decisions",
            records=[chain.copy_record(r) for r in linked],
            columns=list(chain.COPY_COLUMNS),
            schema_name=self.schema,
        )
        last = {r.row.agent_id: r for r in linked}
        await conn.execute(
            "UPDATE audit_chain_heads h SET seq = u.seq, hash = u.hash"
            " FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(agent_id, seq, hash)"
            " WHERE h.agent_id = u.agent_id",
            list(last),
            [r.chain_seq for r in last.values()],
            [r.hash for r in last.values()],
        )
        return len(linked)

    @staticmethod
    async def _lock_heads(
        conn: asyncpg.Connection, agents: list[str]
    ) -> dict[str, chain.ChainPoint]:
        """Lock the agents' chain heads (in agent order: writers never deadlock)."""
        return {
            r["agent_id"]: chain.ChainPoint(r["seq"], r["hash"])
            for r in await conn.fetch(
                "SELECT agent_id, seq, hash FROM audit_chain_heads"
                " WHERE agent_id = ANY($1::text[]) ORDER BY agent_id FOR UPDATE",
                agents,
            )
        }

    # ------------------------------------------------------------------------ history

    async def decisions_for_request(
        self, request_id: str, agent: str | None = None
    ) -> list[chain.LinkedRow]:
        """A request's decisions (of one agent, or of every agent that used this id)."""
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT * FROM audit_decisions WHERE request_id = $1"
                " AND ($2::text IS NULL OR agent_id = $2) ORDER BY agent_id, step",
                request_id,
                agent,
            )
        return [chain.linked_from_record(r) for r in found]

    async def decisions_for_agent(
        self, agent: str, since: datetime, until: datetime | None, limit: int
    ) -> list[chain.LinkedRow]:
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT * FROM audit_decisions WHERE agent_id = $1 AND ts >= $2"
                " AND ($3::timestamptz IS NULL OR ts < $3) ORDER BY ts, request_id, step LIMIT $4",
                agent,
                since,
                until,
                limit,
            )
        return [chain.linked_from_record(r) for r in found]

    async def requests_for(self, request_id: str) -> list[rows.RequestRow]:
        """The request's summaries (one per run: the first, and one per resume; one set per
        agent that used this id)."""
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT * FROM audit_requests WHERE request_id = $1 ORDER BY finished_at",
                request_id,
            )
        return [rows.request_from_record(r) for r in found]

    # ------------------------------------------------------------------------ the chain

    async def chain_agents(self) -> list[str]:
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT agent_id FROM audit_chain_heads UNION SELECT agent_id"
                " FROM audit_chain_anchors ORDER BY 1"
            )
        return [r[0] for r in found]

    async def chain_ends(
        self, agent: str
    ) -> tuple[chain.ChainPoint | None, chain.ChainPoint | None]:
        """(anchor, head) of an agent's chain."""
        async with self._conn() as conn:
            a = await conn.fetchrow(
                "SELECT seq, hash FROM audit_chain_anchors WHERE agent_id = $1", agent
            )
            h = await conn.fetchrow(
                "SELECT seq, hash FROM audit_chain_heads WHERE agent_id = $1", agent
            )
        return (
            None if a is None else chain.ChainPoint(a["seq"], a["hash"]),
            None if h is None else chain.ChainPoint(h["seq"], h["hash"]),
        )

    async def chain_rows(self, agent: str, after_seq: int, limit: int) -> list[chain.LinkedRow]:
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT * FROM audit_decisions WHERE agent_id = $1 AND chain_seq > $2"
                " ORDER BY chain_seq LIMIT $3",
                agent,
                after_seq,
                limit,
            )
        return [chain.linked_from_record(r) for r in found]

    # ------------------------------------------------------------------------ retention

    async def prune_chain(self, agent: str, cutoff: datetime, max_records: int) -> int:
        """Delete the oldest decisions of an agent, a prefix of its chain, all older than
        ``cutoff`` (at most ``max_records``), and move the anchor to the last one deleted."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL {RETENTION_SETTING} = 'on'")
            head = await conn.fetchrow(
                "SELECT seq FROM audit_chain_heads WHERE agent_id = $1 FOR UPDATE", agent
            )
            if head is None:
                return 0
            anchor = await conn.fetchval(
                "SELECT seq FROM audit_chain_anchors WHERE agent_id = $1", agent
            )
            young = await conn.fetchval(
                "SELECT min(chain_seq) FROM audit_decisions WHERE agent_id = $1 AND ts >= $2",
                agent,
                cutoff,
            )
            upto = min(head["seq"] if young is None else young - 1, (anchor or 0) + max_records)
            if upto <= (anchor or 0):
                return 0
            last = await conn.fetchval(
                "SELECT hash FROM audit_decisions WHERE agent_id = $1 AND chain_seq = $2",
                agent,
                upto,
            )
            if last is None:
                raise AuditStoreError(
                    f"retention of {agent}: record #{upto} is missing; run `pilothouse audit "
                    "verify` and investigate before deleting anything"
                )
            deleted = await conn.execute(
                "DELETE FROM audit_decisions WHERE agent_id = $1 AND chain_seq <= $2", agent, upto
            )
            await conn.execute(
                "INSERT INTO audit_chain_anchors (agent_id, seq, hash, deleted_before, updated_at)"
                " VALUES ($1, $2, $3, $4, now()) ON CONFLICT (agent_id) DO UPDATE SET"
                " seq = EXCLUDED.seq, hash = EXCLUDED.hash,"
                " deleted_before = EXCLUDED.deleted_before, updated_at = now()",
                agent,
                upto,
                last,
                cutoff,
            )
        return int(deleted.split()[-1])

    async def prune_requests(self, agent: str, cutoff: datetime) -> int:
        """Delete request summaries and decided escalations older than ``cutoff``."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL {RETENTION_SETTING} = 'on'")
            a = await conn.execute(
                "DELETE FROM audit_requests WHERE agent_id = $1 AND finished_at < $2",
                agent,
                cutoff,
            )
            b = await conn.execute(
                "DELETE FROM audit_escalations WHERE agent_id = $1 AND requested_at < $2"
                " AND status <> 'pending'",
                agent,
                cutoff,
            )
        return int(a.split()[-1]) + int(b.split()[-1])

    # ------------------------------------------------------------------------ escalations

    async def insert_escalation(self, e: rows.EscalationRow) -> rows.EscalationRow:
        """Park an escalation; an existing one with the same id or (request, step) wins."""
        async with self._conn() as conn:
            found = await conn.fetchrow(_INSERT_ESCALATION, *rows.escalation_values(e))
            if found is None:
                found = await conn.fetchrow(
                    "SELECT * FROM audit_escalations WHERE id = $1"
                    " OR (agent_id = $2 AND request_id = $3 AND step = $4)"
                    " ORDER BY requested_at LIMIT 1",
                    e.id,
                    e.agent_id,
                    e.request_id,
                    e.step,
                )
        assert found is not None
        return rows.escalation_from_record(found)

    async def decide_escalation(
        self, escalation_id: str, status: str, by: str, reason: str | None, now: datetime
    ) -> rows.EscalationRow | None:
        """Move a pending escalation to ``status`` (or to ``expired`` when it is past its
        deadline), atomically; ``None`` when it was not pending."""
        async with self._conn() as conn:
            found = await conn.fetchrow(
                "UPDATE audit_escalations SET"
                " status = CASE WHEN expires_at <= $5 THEN 'expired' ELSE $2 END,"
                " decided_at = $5,"
                " decided_by = CASE WHEN expires_at <= $5 THEN NULL ELSE $3 END,"
                " reason = CASE WHEN expires_at <= $5 THEN 'expired before a decision' ELSE $4 END"
                " WHERE id = $1 AND status = 'pending' RETURNING *",
                escalation_id,
                status,
                by,
                reason,
                now,
            )
        return None if found is None else rows.escalation_from_record(found)

    async def get_escalation(self, escalation_id: str) -> rows.EscalationRow | None:
        async with self._conn() as conn:
            found = await conn.fetchrow(
                "SELECT * FROM audit_escalations WHERE id = $1", escalation_id
            )
        return None if found is None else rows.escalation_from_record(found)

    async def list_escalations(
        self, agent: str | None, status: str | None, limit: int
    ) -> list[rows.EscalationRow]:
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT * FROM audit_escalations WHERE ($1::text IS NULL OR agent_id = $1)"
                " AND ($2::text IS NULL OR status = $2) ORDER BY requested_at DESC LIMIT $3",
                agent,
                status,
                limit,
            )
        return [rows.escalation_from_record(r) for r in found]

    async def expire_escalations(self, now: datetime) -> list[rows.EscalationRow]:
        async with self._conn() as conn:
            found = await conn.fetch(
                "UPDATE audit_escalations SET status = 'expired', decided_at = $1,"
                " reason = 'expired before a decision'"
                " WHERE status = 'pending' AND expires_at <= $1 RETURNING *",
                now,
            )
        return [rows.escalation_from_record(r) for r in found]

    async def unsettled_escalations(
        self, agent: str | None, limit: int
    ) -> list[rows.EscalationRow]:
        """Decided escalations the runtime has not acted on yet, oldest decision first."""
        async with self._conn() as conn:
            found = await conn.fetch(
                "SELECT * FROM audit_escalations WHERE status <> 'pending'"
                " AND settled_at IS NULL AND ($1::text IS NULL OR agent_id = $1)"
                " ORDER BY decided_at LIMIT $2",
                agent,
                limit,
            )
        return [rows.escalation_from_record(r) for r in found]

    async def settle_escalation(self, escalation_id: str, now: datetime) -> bool:
        """Mark a decided escalation as acted on; False when it already was (or is pending)."""
        async with self._conn() as conn:
            done = await conn.execute(
                "UPDATE audit_escalations SET settled_at = $2"
                " WHERE id = $1 AND status <> 'pending' AND settled_at IS NULL",
                escalation_id,
                now,
            )
        return str(done).endswith(" 1")
