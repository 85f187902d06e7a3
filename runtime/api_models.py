"""The HTTP API's own request and response bodies (the agent's shapes live in ``requests``).

Why a separate body model: callers may set everything of
:class:`~pilothouse.runtime.requests.AgentRequest` except ``approved_escalation`` (only the
runtime sets it, when a human approved), and may ask to wait for the answer. Strings are checked
for what JSON lets through but the rest of the system cannot store: lone surrogates (invalid
Unicode) and NUL characters (PostgreSQL text cannot hold them). Used by
:mod:`pilothouse.runtime.api`; the field docstrings become the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pilothouse.runtime import requests

__all__ = [
    "MAX_METADATA_ENTRIES",
    "MAX_WAIT_SECONDS",
    "Accepted",
    "ApprovalBody",
    "DecisionHistory",
    "DenialBody",
    "ErrorBody",
    "EscalationList",
    "RequestBody",
    "RequestStatus",
    "check_text",
]

MAX_WAIT_SECONDS: Final = 300.0
"""Longest a caller may wait for an answer in one HTTP request."""
MAX_METADATA_ENTRIES: Final = 64
"""Most ``metadata`` labels per request."""


def check_text(value: str) -> str:
    """``value`` if it is storable text; ValueError naming the problem otherwise."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"contains an invalid Unicode code point at position {e.start} (lone surrogate)"
        ) from e
    if "\x00" in value:
        raise ValueError(f"contains a NUL character at position {value.index(chr(0))}")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class RequestBody(_Body):
    """A message for the agent (``POST /v1/requests``, ``POST /agent/process``)."""

    input: str = Field(min_length=1)
    """The user's message."""
    request_id: str | None = Field(default=None, pattern=requests.REQUEST_ID_PATTERN)
    """Idempotency key: a request id is answered once and audited once. Sending the same id
    again returns the state of the first request. Generated when absent."""
    session_id: str | None = Field(default=None, pattern=requests.REQUEST_ID_PATTERN)
    """Conversation this message belongs to; history and context are kept per session."""
    user: str | None = Field(default=None, max_length=256)
    """End user the request is on behalf of (rate limits per user, audit)."""
    tenant: str | None = Field(default=None, max_length=256)
    """Tenant the request belongs to (rate limits per tenant, audit)."""
    metadata: dict[str, str] = Field(default_factory=dict, max_length=MAX_METADATA_ENTRIES)
    """Free-form labels stored with the request in the audit trail."""
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    """Deadline of this request; defaults to the agent's ``requestTimeoutSeconds``."""
    wait_seconds: float | None = Field(default=None, ge=0, le=MAX_WAIT_SECONDS)
    """Wait up to this long for the answer (200 with the result if it comes in time, else 202).
    The ``wait`` query parameter does the same and takes precedence."""

    @field_validator("input", "user", "tenant")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)

    @field_validator("metadata")
    @classmethod
    def _storable_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for k, v in value.items():
            try:
                check_text(k)
            except ValueError as e:
                raise ValueError(f"key {k[:40]!r}: {e}") from None
            try:
                check_text(v)
            except ValueError as e:
                raise ValueError(f"value of {k[:40]!r}: {e}") from None
        return value

    def to_request(self) -> requests.AgentRequest:
        """The :class:`requests.AgentRequest` to enqueue (with a fresh id when none was sent)."""
        data = self.model_dump(exclude={"wait_seconds"}, exclude_none=True)
        if not data.get("request_id"):
            data["request_id"] = requests.new_request_id()
        return requests.AgentRequest.model_validate(data)


class Accepted(_Body):
    """The request was accepted (or was known already) and is not answered yet."""

    request_id: str
    """The request's id (``GET /v1/requests/{request_id}`` reads its state)."""
    state: Literal["queued"] = "queued"
    """Accepted, not answered yet."""


class RequestStatus(_Body):
    """What is known of a request."""

    request_id: str
    state: Literal["queued", "done"]
    """``queued`` until a worker stored the answer, then ``done``."""
    accepted_at: float | None = None
    """Epoch seconds when the API accepted the request (while queued)."""
    result: requests.AgentResult | None = None
    """The answer, once ``done``."""


class DecisionHistory(_Body):
    """The decision records of a request, in step order."""

    request_id: str
    decisions: list[dict[str, Any]]
    """One record per step (the fields of ``AgentDecision`` as stored, redacted when a
    Compliance policy says so, plus ``chain_seq`` and ``hash`` of the tamper-evident chain)."""


class ApprovalBody(_Body):
    """Why an escalated action is approved. The approver is the authenticated caller (kept in
    the audit trail), never a name in the body."""

    note: str | None = Field(default=None, max_length=4096)
    """Why."""

    @field_validator("note")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)


class DenialBody(_Body):
    """Why an escalated action is denied. The denier is the authenticated caller (kept in the
    audit trail), never a name in the body."""

    reason: str | None = Field(default=None, max_length=4096)
    """Why; the user gets the agent's polite refusal, which quotes it."""

    @field_validator("reason")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)


class EscalationList(_Body):
    """Actions waiting for a human's approval."""

    escalations: list[dict[str, Any]]


class ErrorBody(_Body):
    """Every error answer: a stable code, a sentence naming the problem, details when useful."""

    error: str
    """Stable code: ``invalid_request``, ``body_too_large``, ``queue_full``, ``not_found``..."""
    message: str
    """What is wrong, and where."""
    detail: list[dict[str, Any]] | None = None
    """For ``invalid_request``: one entry per problem, with ``loc`` (where), ``msg`` and
    ``type``."""
