"""AgentDecision: one record per step of a request, the unit of the audit trail.

The agent loop produces them; the worker hands them to a :class:`DecisionSink` (the batched
PostgreSQL writer in ``pilothouse.runtime.audit``) before it acknowledges the queue entry;
``GET /v1/requests/{id}/decisions`` and ``pilothouse history`` read them back.
``(agent_id, request_id, step)`` is unique (request ids are the callers', unique per agent), which
makes redelivery and spool replay idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentDecision", "DecisionSink"]


class AgentDecision(BaseModel):
    """What the agent did at one step of a request, and what came of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    agent_id: str
    step: int = Field(ge=0)
    action: str
    """``request``, ``llm_call``, ``tool_call``, ``answer``, ``fallback``, ``refused``, ..."""
    input: str | None = None
    reasoning: str | None = None
    action_params: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str | None = None
    outcome: str = "ok"
    """``ok``, ``error``, ``denied``, ``escalated``, ``dry_run_denied``, ``fallback``."""
    policy: str | None = None
    """The policy whose verdict this step records, if any."""
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    trace_id: str | None = None
    timestamp: datetime


class DecisionSink(Protocol):
    """Where decision records go. ``submit`` must not block the request for long."""

    async def submit(self, decisions: Sequence[AgentDecision]) -> None:
        """Hand records over; when this returns they are durable (written or spooled)."""
        ...
