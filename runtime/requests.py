"""What goes into an agent and what comes out: the request and result shapes.

Shared by the HTTP API (which validates and enqueues requests), the worker (which runs the
agent loop on them), the evaluation harness (which scores results) and the CLI. The HTTP API
serves these models, so their field docstrings become the OpenAPI document.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionTaken",
    "AgentRequest",
    "AgentResult",
    "ResultStatus",
    "Turn",
    "attributed",
    "new_request_id",
]

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def new_request_id() -> str:
    """A fresh request id (``req-`` + 24 hex digits)."""
    return f"req-{uuid.uuid4().hex[:24]}"


class Turn(BaseModel):
    """One earlier message of a conversation the caller keeps itself (the chat-completions API
    sends the whole conversation with every call)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    role: Literal["user", "assistant"]
    """Who said it."""
    content: str
    """What was said."""


class AgentRequest(BaseModel):
    """One message to an agent, in a session or on its own."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    request_id: str = Field(default_factory=new_request_id, pattern=REQUEST_ID_PATTERN)
    """Idempotency key: a request id is answered once and audited once."""
    input: str = Field(min_length=1)
    """The user's message."""
    session_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN)
    """Conversation this message belongs to; history and context are kept per session."""
    user: str | None = Field(default=None, max_length=256)
    """End user the request is on behalf of (rate limits per user, audit)."""
    tenant: str | None = Field(default=None, max_length=256)
    """Tenant the request belongs to (rate limits per tenant, audit)."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Free-form labels stored with the request in the audit trail."""
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    """Deadline of this request; defaults to the agent's ``requestTimeoutSeconds``."""
    history: tuple[Turn, ...] = ()
    """Earlier turns of the conversation, oldest first, sent by a caller that keeps the
    conversation itself; the agent puts them after the session's history, before ``input``."""
    approved_escalation: str | None = None
    """Set by the runtime when a human approved this request's escalated action."""
    caller: str | None = None
    """Set by the runtime: the authenticated identity that sent the request (``user`` is the
    end user it acts for). None when the API runs without authentication."""


class ResultStatus(StrEnum):
    """How a request ended."""

    COMPLETED = "completed"
    """A model answered."""
    FALLBACK = "fallback"
    """No model could answer; the rule-based fallback did."""
    REFUSED = "refused"
    """A policy refused the request or an action; the answer is a polite refusal."""
    ESCALATED = "escalated"
    """An action waits for a human's approval."""
    FAILED = "failed"
    """The request could not be completed (e.g. step budget exhausted); the answer says why."""
    REJECTED = "rejected"
    """The request cannot be served as given (``input_too_long``: the input alone does not fit
    the model's context); ``refusal_reason`` says why in words, ``fallback_reason`` the code."""


class ActionTaken(BaseModel):
    """A tool call the agent made (or tried to make)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    tool: str
    """Tool name."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Arguments the model passed."""
    ok: bool = True
    """Whether the call succeeded."""
    result: Any = None
    """What the tool returned (parsed JSON when it was JSON)."""
    error: str | None = None
    """Why the call failed or was not made."""


class AgentResult(BaseModel):
    """The outcome of a request."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    request_id: str
    """The request's id."""
    agent_id: str
    """The agent that answered."""
    status: ResultStatus
    """How the request ended."""
    answer: str
    """What the user sees. Never a raw error."""
    refused: bool = False
    """A policy refused the request (``status`` is ``refused``)."""
    refusal_reason: str | None = None
    """Why, in words a person reads."""
    policy: str | None = None
    """The policy that refused or escalated."""
    retry_after_seconds: float | None = None
    """When a rate limit refused the request: retrying this much later would pass it."""
    actions: tuple[ActionTaken, ...] = ()
    """Tool calls, in order."""
    fallback_used: bool = False
    """The answer came from a fallback model or the rule-based fallback."""
    fallback_reason: str | None = None
    """Why the primary model did not answer."""
    model: str | None = None
    """The model that produced the answer, if any."""
    steps: int = 0
    """LLM round trips made."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Total cost of the LLM calls."""
    latency_ms: float = 0.0
    """Time from the start of processing to the answer."""
    session_id: str | None = None
    """The session, when the request belonged to one."""
    context: dict[str, Any] = Field(default_factory=dict)
    """The session context after this request (e.g. ``{"return_initiated": true}``)."""
    escalation_id: str | None = None
    """The pending approval, when ``status`` is ``escalated``."""
    caller: str | None = None
    """The authenticated identity that sent the request (only it, and identities allowed to
    read every result, can read this result)."""


def attributed(result: AgentResult, request: AgentRequest) -> AgentResult:
    """``result`` carrying its request's caller (what the API checks before showing it)."""
    if request.caller is None or result.caller == request.caller:
        return result
    return result.model_copy(update={"caller": request.caller})
