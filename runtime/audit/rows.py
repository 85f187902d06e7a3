"""Decision records and request summaries shaped for storage: what the audit trail keeps.

Why: what is stored is what is hashed, spooled and read back, so it is shaped once, here,
before anything else sees it: personal data redacted (when a Compliance policy says
``redactPII``), inputs or outputs dropped (``logInputs``/``logOutputs``: false), strings
PostgreSQL cannot hold made safe (NUL characters, lone surrogates), JSON values normalised to
what a ``jsonb`` column gives back, timestamps in UTC. Pure; called by the audit writer
(:mod:`pilothouse.runtime.audit.writers`), the spool and the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from pilothouse.runtime import config, records, requests
from pilothouse.runtime.policies import pii

__all__ = [
    "AuditSettings",
    "DecisionRow",
    "EscalationRow",
    "RequestRow",
    "decision_row",
    "decision_values",
    "dumps_json",
    "escalation_from_record",
    "escalation_values",
    "loads_json",
    "request_from_record",
    "request_row",
    "request_values",
]

_REPLACEMENT: Final = "\ufffd"


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """What the audit trail keeps for one agent, from its policies' ``audit`` and
    ``compliance`` sections: inputs/outputs are dropped when any policy says so, and personal
    data is redacted when any Compliance policy says ``redactPII``."""

    log_inputs: bool = True
    log_outputs: bool = True
    redact_pii: bool = False
    retention_days: int = 30

    @classmethod
    def from_config(cls, cfg: config.RuntimeConfig) -> AuditSettings:
        audits = [p.audit for p in cfg.policies if p.audit is not None]
        overrides = [a.retention_days for a in audits if a.retention_days is not None]
        return cls(
            log_inputs=all(a.log_inputs for a in audits),
            log_outputs=all(a.log_outputs for a in audits),
            redact_pii=any(p.compliance.redact_pii for p in cfg.policies if p.compliance),
            retention_days=overrides[0] if overrides else cfg.audit.retention_days,
        )


def _safe(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", _REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(_safe(value))
    if isinstance(value, dict):
        return {_safe(str(k)): _clean(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, scrub) for v in value]
    return value


def dumps_json(value: Any) -> str:
    """JSON text of a value (non-JSON types as strings, NaN/Infinity as null)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, default=str)


def loads_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _normalise(value: Any, scrub: Callable[[str], str]) -> Any:
    """The value as a jsonb column gives it back, cleaned."""
    if value is None:
        return None
    return _clean(loads_json(dumps_json(value)), scrub)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _text(value: str | None, scrub: Callable[[str], str]) -> str | None:
    return None if value is None else scrub(_safe(value))


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """An :class:`records.AgentDecision` as stored (without its chain columns)."""

    request_id: str
    step: int
    agent_id: str
    action: str
    input: str | None
    reasoning: str | None
    action_params: Any
    result: Any
    error: str | None
    outcome: str
    policy: str | None
    latency_ms: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    model: str | None
    trace_id: str | None
    ts: datetime

    @property
    def key(self) -> tuple[str, str, int]:
        """What identifies a decision: request ids are the callers', unique per agent only."""
        return (self.agent_id, self.request_id, self.step)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ts"] = self.ts.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DecisionRow:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["ts"] = datetime.fromisoformat(values["ts"])
        return cls(**values)


DECISION_COLUMNS: Final = tuple(f.name for f in fields(DecisionRow))
_DECISION_JSON: Final = frozenset({"action_params", "result"})


def _values(row: Any, columns: tuple[str, ...], json_columns: frozenset[str]) -> tuple[Any, ...]:
    """A row's column values in ``columns`` order, the jsonb ones as JSON text (None: NULL)."""
    out = []
    for column in columns:
        value = getattr(row, column)
        out.append(dumps_json(value) if column in json_columns and value is not None else value)
    return tuple(out)


def _from_record(
    record: Mapping[str, Any], columns: tuple[str, ...], json_columns: frozenset[str]
) -> dict[str, Any]:
    values = {name: record[name] for name in columns}
    for name in json_columns:
        values[name] = loads_json(values[name])
    return values


def decision_values(row: DecisionRow) -> tuple[Any, ...]:
    """A decision's values in :data:`DECISION_COLUMNS` order, as the store writes them."""
    return _values(row, DECISION_COLUMNS, _DECISION_JSON)


def decision_row(decision: records.AgentDecision, settings: AuditSettings) -> DecisionRow:
    """Shape one decision for storage."""
    scrub = pii.redact if settings.redact_pii else _identity
    return DecisionRow(
        request_id=decision.request_id,
        step=decision.step,
        agent_id=decision.agent_id,
        action=_safe(decision.action),
        input=_text(decision.input, scrub) if settings.log_inputs else None,
        reasoning=_text(decision.reasoning, scrub),
        action_params=_normalise(decision.action_params, scrub) or {},
        result=_normalise(decision.result, scrub) if settings.log_outputs else None,
        error=_text(decision.error, scrub),
        outcome=_safe(decision.outcome),
        policy=_text(decision.policy, _identity),
        latency_ms=float(decision.latency_ms),
        cost_usd=float(decision.cost_usd),
        input_tokens=decision.input_tokens,
        output_tokens=decision.output_tokens,
        model=_text(decision.model, _identity),
        trace_id=_text(decision.trace_id, _identity),
        ts=_utc(decision.timestamp),
    )


@dataclass(frozen=True, slots=True)
class RequestRow:
    """A request's summary (its :class:`requests.AgentResult`) as stored."""

    request_id: str
    attempt: str
    agent_id: str
    status: str
    input: str | None
    answer: str | None
    user_id: str | None
    tenant: str | None
    session_id: str | None
    refused: bool
    refusal_reason: str | None
    policy: str | None
    fallback_used: bool
    model: str | None
    steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    escalation_id: str | None
    metadata: dict[str, Any]
    finished_at: datetime
    caller: str | None = None
    """The authenticated identity that sent the request (``user_id`` is the end user)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["finished_at"] = self.finished_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRow:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["finished_at"] = datetime.fromisoformat(values["finished_at"])
        return cls(**values)


REQUEST_COLUMNS: Final = tuple(f.name for f in fields(RequestRow))
_REQUEST_JSON: Final = frozenset({"metadata"})


def request_values(row: RequestRow) -> tuple[Any, ...]:
    """A request summary's values in :data:`REQUEST_COLUMNS` order, as the store writes them."""
    return _values(row, REQUEST_COLUMNS, _REQUEST_JSON)


def request_from_record(record: Mapping[str, Any]) -> RequestRow:
    """A request summary read back from ``audit_requests`` (jsonb columns as JSON text)."""
    return RequestRow(**_from_record(record, REQUEST_COLUMNS, _REQUEST_JSON))


def request_row(
    request: requests.AgentRequest,
    result: requests.AgentResult,
    settings: AuditSettings,
    finished_at: datetime,
) -> RequestRow:
    """Shape a request's summary for storage."""
    scrub = pii.redact if settings.redact_pii else _identity
    return RequestRow(
        request_id=result.request_id,
        attempt=request.approved_escalation or "",
        agent_id=result.agent_id,
        status=str(result.status),
        input=_text(request.input, scrub) if settings.log_inputs else None,
        answer=_text(result.answer, scrub) if settings.log_outputs else None,
        user_id=_text(request.user, scrub),
        tenant=_text(request.tenant, scrub),
        session_id=request.session_id,
        refused=result.refused,
        refusal_reason=_text(result.refusal_reason, scrub),
        policy=_text(result.policy, _identity),
        fallback_used=result.fallback_used,
        model=_text(result.model, _identity),
        steps=result.steps,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=float(result.cost_usd),
        latency_ms=float(result.latency_ms),
        escalation_id=result.escalation_id,
        metadata=_clean(dict(request.metadata), scrub),
        finished_at=_utc(finished_at),
        caller=request.caller,
    )


@dataclass(frozen=True, slots=True)
class EscalationRow:
    """A parked action waiting for (or past) a human's decision, as stored."""

    id: str
    request_id: str
    step: int
    agent_id: str
    action: str
    """The action kind that escalated (``tool_call`` or ``llm_call``)."""
    tool: str | None
    params: Any
    policy: str | None
    why: str | None
    """The escalating policy's reason."""
    snapshot: Any
    """Everything needed to resume the request (JSON)."""
    status: str
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = None
    """The decider's reason."""
    settled_at: datetime | None = None
    """When the runtime acted on the decision (resumed the request or answered it)."""


ESCALATION_COLUMNS: Final = tuple(f.name for f in fields(EscalationRow))
_ESCALATION_JSON: Final = frozenset({"params", "snapshot"})


def escalation_values(row: EscalationRow) -> tuple[Any, ...]:
    """An escalation's values in :data:`ESCALATION_COLUMNS` order, as the store writes them."""
    return _values(row, ESCALATION_COLUMNS, _ESCALATION_JSON)


def escalation_from_record(record: Mapping[str, Any]) -> EscalationRow:
    """An escalation read back from ``audit_escalations`` (jsonb columns as JSON text)."""
    return EscalationRow(**_from_record(record, ESCALATION_COLUMNS, _ESCALATION_JSON))
