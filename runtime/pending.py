"""An action waiting for a human's approval, with the conversation needed to resume it.

Why: when a policy escalates (a refund tool, an expensive call), the agent loop stops and
returns a :class:`PendingAction` in ``AgentOutcome.pending`` instead of acting. It is plain,
JSON-serialisable data (``pending.model_dump(mode="json")`` /
``PendingAction.model_validate(data)``), so the escalation store can park it in PostgreSQL for
as long as the approval takes and any replica can pick it up again.

On approval, re-run the same request with ``approved_escalation`` set to the pending action's
``escalation_id`` and pass the pending action back::

    outcome = await agent.handle(
        request.model_copy(update={"approved_escalation": pending.escalation_id}),
        resume=pending,
    )

The approved action is checked again with ``Action.approved=True`` (escalation rules let it
pass; others, e.g. rate limits, still apply), executed, and the loop continues from the
snapshot: same messages, same context, step numbers continuing where they stopped. On denial
the store answers the user itself (e.g. with the agent's ``refusalResponse``); nothing needs to
run. Produced and consumed by :mod:`pilothouse.runtime.agent`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.runtime import hooks, llm, requests

__all__ = ["PendingAction", "PendingToolCall", "Snapshot", "mismatch"]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class PendingToolCall(_Data):
    """A tool call the model asked for and that has not run yet."""

    id: str
    name: str
    arguments: str
    """The arguments as the model sent them (JSON text)."""


class Snapshot(_Data):
    """The state of the loop when it stopped, enough to continue it."""

    messages: list[dict[str, Any]]
    """The conversation so far: system prompt, history, this turn's messages."""
    turn_start: int = Field(ge=0)
    """Index of this turn's first message (the user's input) in ``messages``."""
    context: dict[str, Any] = Field(default_factory=dict)
    """The session context so far."""
    pending_tool_calls: list[PendingToolCall] = Field(default_factory=list)
    """For a tool call escalation: the escalated call first, then the calls of the same model
    turn that had not run yet."""
    next_step: int = Field(ge=0)
    """Step number of the next decision record."""
    llm_steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    actions: list[requests.ActionTaken] = Field(default_factory=list)
    model: str | None = None
    fallback_used: bool = False
    fallback_reason: str | None = None

    def pending_calls(self) -> list[llm.ToolCall]:
        return [llm.ToolCall(c.id, c.name, c.arguments) for c in self.pending_tool_calls]

    @property
    def tool_call_id(self) -> str | None:
        """The escalated tool call's id, when a tool call was escalated."""
        return self.pending_tool_calls[0].id if self.pending_tool_calls else None


class PendingAction(_Data):
    """What waits for approval, why, and the snapshot to resume from."""

    escalation_id: str
    """Stable id (``esc-<agent>-<request id>-<step>``): the same request escalating the same
    step gives the same id, so a redelivered request parks one approval, not two; the agent is
    in it because request ids are the callers' and two agents may share one."""
    request_id: str
    agent_id: str
    kind: hooks.ActionKind
    """What was about to happen: the request itself, an LLM call or a tool call."""
    tool_name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    """Tool arguments, or the model of an LLM call."""
    estimated_cost_usd: float = 0.0
    policy: str = ""
    """The policy that escalated."""
    reason: str = ""
    """Why, in words a person reads."""
    created_at: datetime
    snapshot: Snapshot


def mismatch(request: requests.AgentRequest, pending: PendingAction, agent_id: str) -> str | None:
    """Why ``pending`` cannot resume ``request`` on agent ``agent_id``, or None when it can."""
    if pending.agent_id != agent_id:
        return f"escalation {pending.escalation_id} belongs to agent {pending.agent_id}"
    if request.request_id != pending.request_id:
        return (
            f"escalation {pending.escalation_id} belongs to request {pending.request_id}, "
            f"not {request.request_id}"
        )
    if request.approved_escalation != pending.escalation_id:
        return (
            f"escalation {pending.escalation_id} is not approved by this request "
            f"(approved_escalation={request.approved_escalation!r})"
        )
    return None
