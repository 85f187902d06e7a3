"""Escalations: actions parked in PostgreSQL until a human approves or denies them.

Why: an Escalation policy stops the agent loop before a sensitive action (a refund tool, an
expensive call); the loop returns status ``escalated`` and a
:class:`pilothouse.runtime.pending.PendingAction`. The serving layer hands it here:

* :meth:`EscalationService.park` stores it (with the original request) as ``pending``, due to
  expire after the escalating policy's ``escalation.timeoutSeconds``. Parking is idempotent:
  the escalation id is stable per (request, step).
* :meth:`~EscalationService.approve` / :meth:`~EscalationService.deny` decide it, atomically and
  only from ``pending`` (an escalation past its deadline becomes ``expired`` instead, and the
  call raises :class:`EscalationExpired`); :meth:`~EscalationService.expire` sweeps them.
  Four eyes: the identity that sent the request cannot decide its escalation
  (:class:`SelfApproval`). Deciding is idempotent: the same identity taking the same decision
  again gets the decided escalation back; anyone else finds it decided
  (:class:`EscalationNotPending`), so of two approvers at once exactly one wins.
* The runtime then acts on decided escalations: :meth:`~EscalationService.resumption` gives an
  approved one's request (with ``approved_escalation`` set) and pending action to re-run;
  :func:`closing` gives a denied or expired one's final answer and decision record. Either way
  :meth:`~EscalationService.settle` marks it done; :meth:`~EscalationService.unsettled` lists
  decided escalations not yet acted on (whoever decided them: HTTP API on any replica, or the
  ``pilothouse escalations`` command talking to PostgreSQL directly).

Called by the serving layer (``POST /v1/escalations/{id}/approve|deny``,
``GET /v1/escalations``, the worker) and by ``pilothouse escalations``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from pilothouse.runtime import errors, pending, records, requests
from pilothouse.runtime.audit import rows, store

__all__ = [
    "STATUSES",
    "EscalationError",
    "EscalationExpired",
    "EscalationNotFound",
    "EscalationNotPending",
    "EscalationService",
    "SelfApproval",
    "closing",
    "requester",
]

STATUSES: Final = ("pending", "approved", "denied", "expired")


class EscalationError(errors.UsageError):
    """A decision about an escalation that cannot be taken; the message says why."""


class EscalationNotFound(EscalationError):
    def __init__(self, escalation_id: str) -> None:
        super().__init__(f"escalation {escalation_id} not found")
        self.escalation_id = escalation_id


class EscalationNotPending(EscalationError):
    """The escalation was already decided (``status`` says how)."""

    def __init__(self, escalation: rows.EscalationRow) -> None:
        by = f" by {escalation.decided_by}" if escalation.decided_by else ""
        super().__init__(f"escalation {escalation.id} is already {escalation.status}{by}")
        self.escalation = escalation


class SelfApproval(EscalationError):
    """Four eyes: the identity that sent a request cannot approve or deny its escalation."""

    def __init__(self, escalation: rows.EscalationRow, by: str) -> None:
        super().__init__(
            f"{by} sent request {escalation.request_id}, so {by} cannot decide its escalation "
            f"{escalation.id}: another identity with the approve role must"
        )
        self.escalation = escalation


def requester(escalation: rows.EscalationRow) -> str | None:
    """The authenticated identity that sent the escalated request (None when unknown)."""
    request = escalation.snapshot.get("request") or {}
    caller = request.get("caller") if isinstance(request, dict) else None
    return caller if isinstance(caller, str) and caller else None


class EscalationExpired(EscalationNotPending):
    """The escalation passed its deadline before anyone decided."""

    def __init__(self, escalation: rows.EscalationRow) -> None:
        super().__init__(escalation)
        self.args = (
            f"escalation {escalation.id} expired at {escalation.expires_at.isoformat()} "
            "before a decision; the request was not resumed",
        )


def _describe(e: rows.EscalationRow) -> str:
    if e.tool:
        return f"call the tool {e.tool}"
    return "make an LLM call" if e.action == "llm_call" else f"take the action {e.action}"


class EscalationService:
    """Park, decide, list and resume escalations. ``clock`` returns wall-clock seconds."""

    def __init__(
        self, audit_store: store.AuditStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = audit_store
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def park(
        self,
        action: pending.PendingAction,
        request: requests.AgentRequest,
        *,
        timeout_seconds: int,
    ) -> rows.EscalationRow:
        """Store a pending action (idempotent: parking it again returns the stored one)."""
        now = self._now()
        row = rows.EscalationRow(
            id=action.escalation_id,
            request_id=action.request_id,
            step=max(0, action.snapshot.next_step - 1),
            agent_id=action.agent_id,
            action=str(action.kind),
            tool=action.tool_name,
            params=dict(action.params),
            policy=action.policy or None,
            why=action.reason or None,
            snapshot={
                "pending": action.model_dump(mode="json"),
                "request": request.model_dump(mode="json"),
            },
            status="pending",
            requested_at=now,
            expires_at=now + timedelta(seconds=timeout_seconds),
        )
        return await self.store.insert_escalation(row)

    async def get(self, escalation_id: str) -> rows.EscalationRow:
        found = await self.store.get_escalation(escalation_id)
        if found is None:
            raise EscalationNotFound(escalation_id)
        return found

    async def list(
        self, agent: str | None = None, status: str | None = None, *, limit: int = 100
    ) -> builtins.list[rows.EscalationRow]:
        """Escalations, newest first, optionally of one agent and/or in one status."""
        if status is not None and status not in STATUSES:
            raise EscalationError(f"status {status!r}: use one of {', '.join(STATUSES)}")
        return await self.store.list_escalations(agent, status, limit)

    async def approve(
        self, escalation_id: str, by: str, reason: str | None = None
    ) -> rows.EscalationRow:
        """Approve a pending escalation; the runtime then resumes the request."""
        return await self._decide(escalation_id, "approved", by, reason)

    async def deny(
        self, escalation_id: str, by: str, reason: str | None = None
    ) -> rows.EscalationRow:
        """Deny a pending escalation; the request ends with a refusal that says so."""
        return await self._decide(escalation_id, "denied", by, reason)

    async def _decide(
        self, escalation_id: str, status: str, by: str, reason: str | None
    ) -> rows.EscalationRow:
        by = by.strip()
        if not by:
            raise EscalationError("say who decides (by)")
        found = await self.get(escalation_id)
        if requester(found) == by:
            raise SelfApproval(found, by)
        decided = await self.store.decide_escalation(escalation_id, status, by, reason, self._now())
        if decided is None:
            current = await self.get(escalation_id)
            if current.status == status and current.decided_by == by:
                return current  # the same decision by the same identity: idempotent
            if current.status == "expired":
                raise EscalationExpired(current)
            raise EscalationNotPending(current)
        if decided.status == "expired":
            raise EscalationExpired(decided)
        return decided

    async def expire(self, now: datetime | None = None) -> builtins.list[rows.EscalationRow]:
        """Mark every pending escalation past its deadline as expired; those expired now."""
        return await self.store.expire_escalations(now or self._now())

    async def unsettled(
        self, agent: str | None = None, *, limit: int = 100
    ) -> builtins.list[rows.EscalationRow]:
        """Decided escalations the runtime has not acted on yet."""
        return await self.store.unsettled_escalations(agent, limit)

    async def settle(self, escalation_id: str) -> bool:
        """Mark a decided escalation as acted on; False when it already was."""
        return await self.store.settle_escalation(escalation_id, self._now())

    async def get_snapshot(self, escalation_id: str) -> pending.PendingAction:
        """The pending action (with the conversation snapshot) of an approved escalation."""
        return (await self.resumption(escalation_id))[1]

    async def resumption(
        self, escalation_id: str
    ) -> tuple[requests.AgentRequest, pending.PendingAction]:
        """What to re-run for an approved escalation: the original request with
        ``approved_escalation`` set, and the pending action to pass as ``resume``."""
        found = await self.get(escalation_id)
        if found.status != "approved":
            raise EscalationError(
                f"escalation {escalation_id} is {found.status}; only approved ones resume"
            )
        return _request_of(found), pending.PendingAction.model_validate(found.snapshot["pending"])


def _request_of(e: rows.EscalationRow) -> requests.AgentRequest:
    original = requests.AgentRequest.model_validate(e.snapshot["request"])
    return original.model_copy(update={"approved_escalation": e.id})


def closing(
    e: rows.EscalationRow, *, now: datetime
) -> tuple[requests.AgentRequest, requests.AgentResult, records.AgentDecision]:
    """The end of a request whose escalation was denied or expired: the request (as resumed),
    the answer the user gets, and the decision record of the human's verdict (to audit)."""
    if e.status not in ("denied", "expired"):
        raise EscalationError(f"escalation {e.id} is {e.status}; only denied or expired ones close")
    what = _describe(e)
    if e.status == "denied":
        because = f": {e.reason}" if e.reason else "."
        answer = f"A reviewer declined the request to {what}, so it was not done{because}"
        status, outcome = requests.ResultStatus.REFUSED, "denied"
        why = f"escalation denied by {e.decided_by}" + (f": {e.reason}" if e.reason else "")
    else:
        answer = (
            f"The approval needed to {what} expired before anyone decided, so it was not done. "
            "Please try again later."
        )
        status, outcome = requests.ResultStatus.FAILED, "expired"
        why = f"escalation expired at {e.expires_at.isoformat()}"
    pending_action = pending.PendingAction.model_validate(e.snapshot["pending"])
    snap = pending_action.snapshot
    result = requests.AgentResult(
        request_id=e.request_id,
        agent_id=e.agent_id,
        status=status,
        answer=answer,
        refused=status is requests.ResultStatus.REFUSED,
        refusal_reason=why,
        policy=e.policy,
        actions=tuple(snap.actions),
        steps=snap.llm_steps,
        input_tokens=snap.input_tokens,
        output_tokens=snap.output_tokens,
        cost_usd=snap.cost_usd,
        context=dict(snap.context),
        escalation_id=e.id,
    )
    decision = records.AgentDecision(
        request_id=e.request_id,
        agent_id=e.agent_id,
        step=snap.next_step,
        action="escalation",
        action_params={"escalation_id": e.id, "tool": e.tool},
        result=answer,
        outcome=outcome,
        policy=e.policy,
        reasoning=why,
        timestamp=e.decided_at or now,
    )
    return _request_of(e), result, decision
