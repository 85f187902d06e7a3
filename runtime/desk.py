"""The escalation desk: what the runtime does with escalations once a human decided them.

Glue between the escalation store (:mod:`pilothouse.runtime.escalations`, PostgreSQL), the
audit writer and the work queue, for the serving layer:

* :meth:`Desk.approve` (``POST /v1/escalations/{id}/approve``) decides, then *acts*: the
  original request goes back into the queue with ``approved_escalation`` set, and a worker
  resumes it from the parked snapshot. :meth:`Desk.deny` decides, then closes the request:
  its refusal is audited and stored as its answer.
* :class:`Settler` (worker role) acts on decisions taken elsewhere (another replica that died
  before acting, the ``pilothouse escalations`` command) and on escalations that expired: it
  polls the store's unsettled escalations of this agent.

Acting is idempotent, so the API and the settler may race: a resumed request is queued only
while its stored answer is still the escalation (:meth:`queue.WorkQueue.enqueue`), a denial's
answer is stored only then too, audit records are unique per (request, step). Each escalation
is marked settled after acting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from pilothouse.runtime import (
    api_escalations,
    envelopes,
    errors,
    escalations,
    periodic,
    queue,
    requests,
    workers,
)
from pilothouse.runtime.audit import rows

__all__ = ["DEFAULT_SETTLE_INTERVAL_SECONDS", "Desk", "Settler"]

log = logging.getLogger(__name__)

DEFAULT_SETTLE_INTERVAL_SECONDS: Final = 5.0
DEFAULT_DECIDER: Final = "anonymous"
"""``decided_by`` when the API runs without authentication."""


def _summary(e: rows.EscalationRow) -> dict[str, Any]:
    return {
        "escalation_id": e.id,
        "request_id": e.request_id,
        "agent_id": e.agent_id,
        "step": e.step,
        "action": e.action,
        "tool": e.tool,
        "params": e.params,
        "policy": e.policy,
        "why": e.why,
        "status": e.status,
        "requested_at": e.requested_at.isoformat(),
        "expires_at": e.expires_at.isoformat(),
    }


class Desk:
    """Implements :class:`api_escalations.EscalationDesk` over the escalation store."""

    def __init__(
        self,
        service: escalations.EscalationService,
        work_queue: queue.WorkQueue,
        sink: workers.ResultSink,
        *,
        agent: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.queue = work_queue
        self.sink = sink
        self.agent = agent
        self._clock = clock

    async def pending(self) -> list[dict[str, Any]]:
        found = await self.service.list(self.agent, "pending")
        return [_summary(e) for e in reversed(found)]

    async def approve(
        self, escalation_id: str, *, by: str | None, note: str | None
    ) -> requests.AgentRequest:
        decided = await self._decide(self.service.approve, escalation_id, by, note)
        return await self.act(decided)

    async def deny(
        self, escalation_id: str, *, by: str | None, reason: str | None
    ) -> requests.AgentResult:
        decided = await self._decide(self.service.deny, escalation_id, by, reason)
        return await self.close(decided)

    async def _decide(
        self, decide: Any, escalation_id: str, by: str | None, why: str | None
    ) -> rows.EscalationRow:
        try:
            found = await self.service.get(escalation_id)
        except escalations.EscalationNotFound as e:
            raise api_escalations.EscalationNotFound(str(e)) from e
        if found.agent_id != self.agent:
            raise api_escalations.EscalationNotFound(f"escalation {escalation_id} not found")
        try:
            decided: rows.EscalationRow = await decide(escalation_id, by or DEFAULT_DECIDER, why)
        except escalations.EscalationNotPending as e:
            raise api_escalations.EscalationDecided(str(e)) from e
        except escalations.SelfApproval as e:
            raise api_escalations.EscalationForbidden(str(e)) from e
        return decided

    # ------------------------------------------------------------------------ acting

    async def act(self, e: rows.EscalationRow) -> requests.AgentRequest:
        """Resume an approved escalation's request: back into the queue."""
        request, _ = await self.service.resumption(e.id)
        outcome = await self.queue.enqueue(envelopes.Envelope(request, queue.now()))
        if isinstance(outcome, envelopes.RequestState):
            log.info("escalation %s: request %s already resumed", e.id, e.request_id)
        await self.service.settle(e.id)
        return request

    async def close(self, e: rows.EscalationRow) -> requests.AgentResult:
        """End a denied or expired escalation's request: audit and store its answer."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        request, result, decision = escalations.closing(e, now=now)
        result = requests.attributed(result, request)
        await self.sink.submit_result(request, result, (decision,))
        await self.queue.answer_escalated(e.request_id, e.id, result.model_dump_json().encode())
        await self.service.settle(e.id)
        return result


class Settler(periodic.Periodic):
    """Acts on this agent's decided-but-unsettled escalations, every ``interval`` seconds."""

    def __init__(self, desk: Desk, *, interval: float = DEFAULT_SETTLE_INTERVAL_SECONDS) -> None:
        super().__init__(
            "escalation-settler", lambda: self.settle_once(), interval=interval, run_at_start=False
        )
        self.desk = desk

    async def settle_once(self) -> int:
        """Act on every unsettled escalation found now; returns how many were settled."""
        done = 0
        await self.desk.service.expire()
        for e in await self.desk.service.unsettled(self.desk.agent):
            try:
                if e.status == "approved":
                    await self.desk.act(e)
                elif e.status in ("denied", "expired"):
                    await self.desk.close(e)
                else:
                    continue
                done += 1
            except (errors.PilothouseError, ValueError) as exc:
                log.warning("cannot settle escalation %s yet: %s", e.id, exc)
        return done
