"""What travels through the work queue, and how it is encoded: pure, no I/O.

The HTTP API builds an :class:`Envelope` (the request, when it was accepted, where to reply,
the W3C trace context); :mod:`pilothouse.runtime.queue` encodes it into a stream entry and
decodes entries back into :class:`Delivery` objects for the worker pool. A request's state in
Redis is ``q`` + JSON while queued and ``d`` + the result JSON once answered
(:func:`parse_state`). Kept apart from the queue so that the codec is unit-tested without Redis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from pydantic import TypeAdapter, ValidationError

from pilothouse.runtime import errors, records, requests

__all__ = [
    "DEFAULT_RETRY_AFTER_SECONDS",
    "DONE",
    "QUEUED",
    "Accepted",
    "Completion",
    "Delivery",
    "Envelope",
    "RequestState",
    "decode_audit",
    "decode_envelope",
    "delivery_of",
    "encode_audit",
    "encode_envelope",
    "fields_of",
    "parse_state",
]

DEFAULT_RETRY_AFTER_SECONDS: Final = 1
"""``Retry-After`` of a full queue when nothing better is known."""
QUEUED: Final = b"q"
"""First byte of the state of a queued request."""
DONE: Final = b"d"
"""First byte of the state of an answered request (the result JSON follows)."""
_REQUEST_ID_RE: Final = re.compile(requests.REQUEST_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a stream entry carries besides the request: where to reply, the trace context."""

    request: requests.AgentRequest
    accepted_at: float
    """Epoch seconds when the API accepted the request."""
    reply_to: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """An entry handed to this worker: the decoded envelope, or why it could not be decoded."""

    entry_id: str
    deliveries: int
    envelope: Envelope | None
    fields: Mapping[bytes, bytes]
    error: str | None = None

    @property
    def request_id(self) -> str | None:
        if self.envelope is not None:
            return self.envelope.request.request_id
        return _peek_request_id(self.fields)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request is in the stream."""

    entry_id: str
    backlog: int


@dataclass(frozen=True, slots=True)
class RequestState:
    """What is known of a request: queued, or done with its result."""

    state: Literal["queued", "done"]
    accepted_at: float | None = None
    result_json: bytes | None = None

    def result(self) -> requests.AgentResult | None:
        if self.result_json is None:
            return None
        return requests.AgentResult.model_validate_json(self.result_json)


@dataclass(frozen=True, slots=True)
class Completion:
    """A result to store, with what the audit trail must get for it."""

    entry_id: str
    request_id: str
    result_json: bytes
    reply_to: str | None = None
    audit: bytes = b""
    """The request, result and decision records (:func:`encode_audit`), kept with the answer
    until the entry is acknowledged."""


_DECISIONS: Final = TypeAdapter(list[records.AgentDecision])


def encode_audit(
    request: requests.AgentRequest,
    result_json: bytes,
    decisions: Sequence[records.AgentDecision],
) -> bytes:
    """What a finished request hands to the audit trail, as one JSON document."""
    return (
        b'{"request":'
        + request.model_dump_json().encode()
        + b',"result":'
        + result_json
        + b',"decisions":'
        + _DECISIONS.dump_json(list(decisions))
        + b"}"
    )


def decode_audit(
    data: bytes,
) -> tuple[requests.AgentRequest, requests.AgentResult, list[records.AgentDecision]]:
    """The inverse of :func:`encode_audit`."""
    doc = orjson.loads(data)
    return (
        requests.AgentRequest.model_validate(doc["request"]),
        requests.AgentResult.model_validate(doc["result"]),
        _DECISIONS.validate_python(doc["decisions"]),
    )


def to_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def to_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_state(raw: bytes | str | None) -> RequestState | None:
    """Decode a state value (``q{...}`` or ``d{...}``); None for a missing or foreign value."""
    if raw is None:
        return None
    data = to_bytes(raw)
    if data[:1] == DONE:
        return RequestState("done", result_json=data[1:])
    if data[:1] == QUEUED:
        try:
            meta = orjson.loads(data[1:])
        except orjson.JSONDecodeError:
            meta = {}
        at = meta.get("at") if isinstance(meta, dict) else None
        return RequestState("queued", accepted_at=at if isinstance(at, int | float) else None)
    return None


def encode_envelope(envelope: Envelope) -> dict[bytes, bytes]:
    """The stream entry's fields (short names: every byte is copied a few times)."""
    fields = {
        b"r": envelope.request.model_dump_json(exclude_defaults=True).encode(),
        b"at": repr(envelope.accepted_at).encode(),
    }
    if envelope.reply_to:
        fields[b"rt"] = envelope.reply_to.encode()
    if envelope.traceparent:
        fields[b"tp"] = envelope.traceparent.encode()
    if envelope.tracestate:
        fields[b"ts"] = envelope.tracestate.encode()
    return fields


def decode_envelope(fields: Mapping[bytes, bytes]) -> Envelope:
    """The envelope of an entry; :class:`errors.UsageError` names what is wrong with it."""
    raw = fields.get(b"r")
    if raw is None:
        raise errors.UsageError("malformed entry: no request field 'r'")
    try:
        request = requests.AgentRequest.model_validate_json(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}"
            for err in e.errors(include_input=False)
        )
        raise errors.UsageError(f"malformed entry: invalid request ({problems})") from e
    try:
        accepted_at = float(fields.get(b"at", b"0"))
    except ValueError:
        accepted_at = 0.0

    def opt(name: bytes) -> str | None:
        value = fields.get(name)
        return value.decode(errors="replace") if value else None

    return Envelope(
        request=request,
        accepted_at=accepted_at,
        reply_to=opt(b"rt"),
        traceparent=opt(b"tp"),
        tracestate=opt(b"ts"),
    )


def _peek_request_id(fields: Mapping[bytes, bytes]) -> str | None:
    try:
        data = orjson.loads(fields.get(b"r", b""))
    except orjson.JSONDecodeError:
        return None
    rid = data.get("request_id") if isinstance(data, dict) else None
    if isinstance(rid, str) and _REQUEST_ID_RE.fullmatch(rid):
        return rid
    return None


def fields_of(raw: Any) -> dict[bytes, bytes]:
    """Entry fields from a reply: a dict (RESP2 parsed by redis-py) or a flat list (Lua)."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {to_bytes(k): to_bytes(v) for k, v in raw.items()}
    items = list(raw)
    return {to_bytes(items[i]): to_bytes(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def delivery_of(entry_id: Any, raw_fields: Any, deliveries: int) -> Delivery:
    fields = fields_of(raw_fields)
    try:
        envelope: Envelope | None = decode_envelope(fields)
        error = None
    except errors.UsageError as e:
        envelope, error = None, str(e)
    return Delivery(to_str(entry_id), deliveries, envelope, fields, error)
