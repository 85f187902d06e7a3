"""``pilothouse audit verify``: walk every agent's hash chain and report the first break.

Reads each chain from its retention anchor in ``chain_seq`` order, a page at a time, through
the store, and lets :class:`chain.ChainVerifier` recompute every hash. A record altered in
place, removed from the middle or the end, or a head that does not match is reported with the
record's position, request id and step.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.runtime.audit import chain, store

__all__ = ["AgentReport", "verify"]

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
