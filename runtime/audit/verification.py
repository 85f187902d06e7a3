"""``pilothouse audit verify``: walk every agent's hash chain and report the first break.

Reads each chain from its retention anchor in ``chain_seq`` order, a page at a time, through
the store, and lets :class:`chain.ChainVerifier` recompute every hash. A record altered in
place, removed from the middle or the end, or a head that does not match is reported with the
record's position, request id and step.

A chain shows what was stored and whether it was altered; it cannot show a record that never
arrived. :func:`check_completeness` does: it takes the requests the work queue answered (its
ledger in Redis, read by :func:`pilothouse.runtime.queue.answered_requests`) and reports those
with no summary row in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.runtime.audit import chain, store

__all__ = ["AgentReport", "CompletenessReport", "check_completeness", "verify"]

PAGE_SIZE = 2000


@dataclass(frozen=True, slots=True)
class AgentReport:
    agent: str
    verified: int
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def verify_agent(audit_store: store.AuditStore, agent: str) -> AgentReport:
    anchor, head = await audit_store.chain_ends(agent)
    verifier = chain.ChainVerifier(agent, anchor)
    after = verifier.anchor.seq
    while True:
        page = await audit_store.chain_rows(agent, after, PAGE_SIZE)
        for r in page:
            if not verifier.feed(r):
                return AgentReport(agent, verifier.verified, verifier.problem)
        if len(page) < PAGE_SIZE:
            break
        after = page[-1].chain_seq
    return AgentReport(agent, verifier.verified, verifier.finish(head))


async def verify(audit_store: store.AuditStore, agent: str | None = None) -> list[AgentReport]:
    """One report per agent (or for the one agent asked about)."""
    agents = [agent] if agent is not None else await audit_store.chain_agents()
    return [await verify_agent(audit_store, a) for a in agents]


@dataclass(frozen=True, slots=True)
class CompletenessReport:
    """Answered requests checked against the audit store."""

    agent: str
    checked: int
    """Answered requests whose records should be stored by now."""
    missing: tuple[str, ...]
    """Those with no summary row: records lost (or never written)."""
    not_checked: int
    """Answered too recently, or still pending in the queue (records on their way)."""

    @property
    def ok(self) -> bool:
        return not self.missing


async def check_completeness(
    audit_store: store.AuditStore, agent: str, answered: Sequence[str], not_checked: int = 0
) -> CompletenessReport:
    """Which of the ``answered`` request ids of ``agent`` have no summary row."""
    unique = list(dict.fromkeys(answered))
    found: set[str] = set()
    for i in range(0, len(unique), PAGE_SIZE):
        found |= await audit_store.audited_requests(agent, unique[i : i + PAGE_SIZE])
    missing = tuple(r for r in unique if r not in found)
    return CompletenessReport(agent, len(unique), missing, not_checked)
