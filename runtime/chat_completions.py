"""The OpenAI chat-completions dialect: request bodies, and answers built from agent results.

Platform teams call models with the official ``openai`` client, LiteLLM or LangChain; with this
an agent is such a model (``model`` = the agent's name). Pure: it turns a chat-completions body
into the :class:`~pilothouse.runtime.requests.AgentRequest` the queue takes, and an
:class:`~pilothouse.runtime.requests.AgentResult` into a ``chat.completion`` object or the
``chat.completion.chunk`` events of a stream, and builds errors in OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``). The routes are in
:mod:`pilothouse.runtime.api_chat`.

What Pilothouse adds, in fields plain clients ignore: ``pilothouse`` on the completion (request
id, status, cost, steps, tool calls, escalation id) and on stream chunks (one step event each),
and ``usage.cost`` (USD).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pilothouse.runtime import api_models, requests

__all__ = [
    "ERROR_TYPES",
    "ChatCompletionBody",
    "ChatInputError",
    "ChatMessage",
    "chunks",
    "completion",
    "completion_id",
    "error_body",
    "event_chunk",
    "first_chunk",
    "models_list",
    "step_events",
    "to_request",
]

ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
"""OpenAI's error ``type`` per status (5xx: ``server_error``)."""
DELTA_WORDS: Final = 8
"""Words per content delta of a streamed answer."""
_WORDS = re.compile(r"\S+\s*|\s+")


class ChatInputError(ValueError):
    """A chat-completions body the agent cannot take: 400 naming the parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class _Model(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do: clients send sampling
    # parameters (temperature, top_p, n...) that an agent has no use for.
    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)


class ContentPart(_Model):
    """One part of a message's content; only ``text`` parts are read."""

    type: str
    text: str | None = None


class ChatMessage(_Model):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    """Who said it. ``system`` and ``developer`` messages are not passed to the model: the
    agent's own system prompt governs it."""
    content: str | list[ContentPart] | None = None
    """Text, or a list of parts of which the ``text`` ones are read."""

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(_Model):
    include_usage: bool = False
    """Send a last chunk with ``usage`` (and no choices) before ``[DONE]``."""


class ChatCompletionBody(_Model):
    """``POST /v1/chat/completions``: the conversation for the agent named by ``model``."""

    model: str = Field(min_length=1)
    """The agent's name."""
    messages: list[ChatMessage] = Field(min_length=1)
    """The conversation, oldest first; the last one must be the user's."""
    stream: bool = False
    """Answer with server-sent events (``chat.completion.chunk``), ending with ``[DONE]``."""
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    """End user the request is on behalf of (rate limits per user, audit)."""
    metadata: dict[str, str] = Field(
        default_factory=dict, max_length=api_models.MAX_METADATA_ENTRIES
    )
    """Labels stored with the request in the audit trail."""

    @field_validator("user")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return None if value is None else api_models.check_text(value)


def to_request(
    body: ChatCompletionBody,
    *,
    request_id: str,
    session_id: str | None,
    tenant: str | None,
    max_input_chars: int,
) -> requests.AgentRequest:
    """The agent request for ``body``: the last user message is the input, earlier user and
    assistant messages its history. :class:`ChatInputError` naming the problem otherwise."""
    last = body.messages[-1]
    where = f"messages[{len(body.messages) - 1}]"
    if last.role != "user":
        raise ChatInputError(f"{where}: the last message must be the user's, not {last.role!r}")
    text = last.text()
    if not text.strip():
        raise ChatInputError(f"{where}.content: the user's message has no text", where)
    history: list[requests.Turn] = []
    total = len(text)
    for i, m in enumerate(body.messages[:-1]):
        if m.role not in ("user", "assistant"):
            continue
        content = m.text()
        if content:
            history.append(requests.Turn(role=m.role, content=content))
            total += len(content)
        try:
            api_models.check_text(content)
        except ValueError as e:
            raise ChatInputError(f"messages[{i}].content: {e}", f"messages[{i}]") from None
    try:
        api_models.check_text(text)
    except ValueError as e:
        raise ChatInputError(f"{where}.content: {e}", where) from None
    if total > max_input_chars:
        raise ChatInputError(
            f"messages: {total} characters of conversation, the limit is {max_input_chars}",
            "messages",
        )
    for k, v in body.metadata.items():
        try:
            api_models.check_text(k)
            api_models.check_text(v)
        except ValueError as e:
            raise ChatInputError(f"metadata[{k[:40]!r}]: {e}", "metadata") from None
    return requests.AgentRequest(
        request_id=request_id,
        input=text,
        session_id=session_id,
        user=body.user,
        tenant=tenant,
        metadata=body.metadata,
        history=tuple(history),
    )


def completion_id(request_id: str) -> str:
    """The completion's ``id``: ``chatcmpl-`` + the request id (so each names the other)."""
    return f"chatcmpl-{request_id}"


def _usage(result: requests.AgentResult) -> dict[str, Any]:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
        "cost": result.cost_usd,
    }


def _extension(result: requests.AgentResult) -> dict[str, Any]:
    return {
        "request_id": result.request_id,
        "status": str(result.status),
        "cost_usd": result.cost_usd,
        "steps": result.steps,
        "model": result.model,
        "fallback_used": result.fallback_used,
        "policy": result.policy,
        "refusal_reason": result.refusal_reason,
        "escalation_id": result.escalation_id,
        "session_id": result.session_id,
        "actions": [a.model_dump(mode="json") for a in result.actions],
    }


def completion(result: requests.AgentResult, *, created: int) -> bytes:
    """The ``chat.completion`` object of an answered request."""
    doc = {
        "id": completion_id(result.request_id),
        "object": "chat.completion",
        "created": created,
        "model": result.agent_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(result),
        "pilothouse": _extension(result),
    }
    return orjson.dumps(doc)


def step_events(result: requests.AgentResult) -> list[dict[str, Any]]:
    """What the agent did on the way to its answer, in order: ``tool_call`` per tool call
    (name, arguments, ok, error), ``fallback`` when a fallback answered, ``refused`` or
    ``escalated`` when a policy did so."""
    events: list[dict[str, Any]] = [
        {"type": "tool_call", "tool": a.tool, "params": a.params, "ok": a.ok, "error": a.error}
        for a in result.actions
    ]
    if result.fallback_used:
        events.append({"type": "fallback", "reason": result.fallback_reason})
    if result.status is requests.ResultStatus.REFUSED:
        events.append({"type": "refused", "policy": result.policy, "reason": result.refusal_reason})
    if result.status is requests.ResultStatus.ESCALATED:
        events.append(
            {"type": "escalated", "policy": result.policy, "escalation_id": result.escalation_id}
        )
    return events


def _deltas(answer: str) -> Iterator[str]:
    words = _WORDS.findall(answer)
    for i in range(0, len(words), DELTA_WORDS):
        yield "".join(words[i : i + DELTA_WORDS])


def chunks(result: requests.AgentResult, *, created: int, include_usage: bool) -> Iterator[bytes]:
    """The ``chat.completion.chunk`` objects after the first (role) chunk: one per step event
    (an empty delta and the event under ``pilothouse.event``), the answer as content deltas,
    the finish (with ``pilothouse`` as on a completion), and the usage chunk when asked."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        doc = {
            "id": completion_id(result.request_id),
            "object": "chat.completion.chunk",
            "created": created,
            "model": result.agent_id,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        return orjson.dumps(doc)

    for event in step_events(result):
        yield event_chunk(result.request_id, result.agent_id, event, created=created)
    for piece in _deltas(result.answer):
        yield chunk({"content": piece})
    yield chunk({}, "stop", pilothouse=_extension(result))
    if include_usage:
        yield orjson.dumps(
            {
                "id": completion_id(result.request_id),
                "object": "chat.completion.chunk",
                "created": created,
                "model": result.agent_id,
                "choices": [],
                "usage": _usage(result),
            }
        )


def event_chunk(request_id: str, agent: str, event: dict[str, Any], *, created: int) -> bytes:
    """A chunk carrying one step event under ``pilothouse.event`` (and an empty delta)."""
    doc = {
        "id": completion_id(request_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": agent,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}],
        "pilothouse": {"event": event},
    }
    return orjson.dumps(doc)


def first_chunk(request_id: str, agent: str, *, created: int) -> bytes:
    """The stream's first chunk: the assistant's role, no content yet."""
    doc = {
        "id": completion_id(request_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": agent,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    return orjson.dumps(doc)


def error_body(status: int, message: str, *, code: str, param: str | None = None) -> bytes:
    """An error in OpenAI's shape."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def models_list(agent: str) -> bytes:
    """``GET /v1/models``: the one model this API serves, the agent."""
    return orjson.dumps(
        {
            "object": "list",
            "data": [{"id": agent, "object": "model", "created": 0, "owned_by": "pilothouse"}],
        }
    )
