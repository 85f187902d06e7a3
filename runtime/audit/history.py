"""Decision history: what an agent did for a request, step by step, and in a time range.

The debugging loop of the original write-up (``get_decision_history('req-123')`` then print
action, latency, cost per step), served from the audit trail: :func:`for_request` and
:func:`for_agent` read through the store (``GET /v1/requests/{id}/decisions`` and
``pilothouse history`` call them); :func:`table` and :func:`as_json` render them (pure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pilothouse.runtime.audit import chain, store

__all__ = ["as_json", "for_agent", "for_request", "table"]

COLUMNS = ("step", "action", "latency ms", "cost usd", "outcome", "policy", "error")


async def for_request(
    audit_store: store.AuditStore, request_id: str, agent: str | None = None
) -> list[chain.LinkedRow]:
    """The request's decisions, ordered by step: those of ``agent``, or (request ids being the
    callers') of every agent that answered a request with this id, agent by agent."""
    return await audit_store.decisions_for_request(request_id, agent)


async def for_agent(
    audit_store: store.AuditStore,
    agent: str,
    since: datetime,
    until: datetime | None = None,
    *,
    limit: int = 1000,
) -> list[chain.LinkedRow]:
    """An agent's decisions in ``[since, until)``, oldest first."""
    return await audit_store.decisions_for_agent(agent, since, until, limit)


def as_json(found: Sequence[chain.LinkedRow]) -> list[dict[str, Any]]:
    """JSON-ready records (what the HTTP API and ``--json`` print)."""
    out = []
    for r in found:
        data = r.row.to_json()
        data["chain_seq"] = r.chain_seq
        data["hash"] = r.hash
        out.append(data)
    return out


def _cell(value: str | None, width: int = 60) -> str:
    text = "" if value is None else " ".join(value.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(found: Sequence[chain.LinkedRow], *, with_request: bool = False) -> str:
    """A plain-text table: step, action, latency ms, cost, outcome, policy, error."""
    header = (("request",) if with_request else ()) + COLUMNS
    lines = [
        ((r.row.request_id,) if with_request else ())
        + (
            str(r.row.step),
            r.row.action,
            f"{r.row.latency_ms:.1f}",
            f"{r.row.cost_usd:.6f}",
            r.row.outcome,
            _cell(r.row.policy),
            _cell(r.row.error),
        )
        for r in found
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    numeric = {"step", "latency ms", "cost usd"}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if h in numeric else c.ljust(w)
            for c, w, h in zip(cells, widths, header, strict=True)
        ).rstrip()

    return "\n".join([fmt(header), *(fmt(line) for line in lines)])
