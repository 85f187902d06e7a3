"""The OpenAI Chat Completions responses: completions, stream chunks, errors, model lists.

Pure functions, no I/O: the server builds every answer body here from a validated
:class:`~pilothouse.runtime.mockllm.completions.ChatRequest` and the scenario's
:class:`~pilothouse.runtime.mockllm.completions.Reply`. Token counts are approximate and
deterministic (a quarter of the characters, rounded up). :func:`completion_problems` checks a
body the other way round, for tests that must tell good answers from injected broken ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import orjson

from pilothouse.runtime.mockllm import completions

__all__ = [
    "build_chunks",
    "build_completion",
    "build_error",
    "build_model_list",
    "completion_problems",
    "count_tokens",
    "prompt_tokens",
]

_STREAM_PIECE_CHARS: Final = 24
"""Content is streamed in pieces of about this many characters."""


def count_tokens(chars: int) -> int:
    """The approximate token count of ``chars`` characters: a quarter, rounded up."""
    return math.ceil(chars / 4)


def prompt_tokens(request: completions.ChatRequest) -> int:
    """The prompt tokens of ``request`` (messages with their framing, and the tools)."""
    prompt_chars = request.tools_chars
    for m in request.messages:
        prompt_chars += len(m.content) + 16  # role and framing overhead
        for c in m.tool_calls:
            prompt_chars += len(c.name) + len(c.arguments)
    return count_tokens(prompt_chars)


def _usage(
    request: completions.ChatRequest, content: str, calls: Sequence[completions.ToolCall]
) -> dict[str, int]:
    completion_chars = len(content) + sum(len(c.name) + len(c.arguments) for c in calls)
    prompt = prompt_tokens(request)
    completion = max(1, count_tokens(completion_chars))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _truncate(request: completions.ChatRequest, reply: completions.Reply) -> tuple[str | None, str]:
    """The content as sent (cut to ``max_tokens``) and the finish reason."""
    if reply.tool_calls:
        return reply.content, "tool_calls"
    content = reply.content or ""
    if request.max_tokens is not None and count_tokens(len(content)) > request.max_tokens:
        return content[: request.max_tokens * 4], "length"
    return content, "stop"


def _tool_call_json(call: completions.ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def build_completion(
    request: completions.ChatRequest, reply: completions.Reply, *, completion_id: str, created: int
) -> dict[str, Any]:
    """A ``chat.completion`` object answering ``request`` with ``reply``."""
    content, finish = _truncate(request, reply)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [_tool_call_json(c) for c in reply.tool_calls]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "system_fingerprint": "pilothouse-mock-llm",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(request, content or "", reply.tool_calls),
    }


def build_chunks(
    request: completions.ChatRequest, reply: completions.Reply, *, completion_id: str, created: int
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order (no ``[DONE]``)."""
    content, finish = _truncate(request, reply)
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.model,
        "system_fingerprint": "pilothouse-mock-llm",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    text = content or ""
    for start in range(0, len(text), _STREAM_PIECE_CHARS):
        chunks.append(chunk({"content": text[start : start + _STREAM_PIECE_CHARS]}))
    for i, call in enumerate(reply.tool_calls):
        chunks.append(chunk({"tool_calls": [{"index": i, **_tool_call_json(call)}]}))
    chunks.append(chunk({}, finish))
    if request.include_usage:
        chunks.append({**base, "choices": [], "usage": _usage(request, text, reply.tool_calls)})
    return chunks


def build_error(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def build_model_list(models: Sequence[str], *, created: int) -> dict[str, Any]:
    """The ``GET /v1/models`` answer."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "pilothouse"}
            for m in models
        ],
    }


def completion_problems(body: bytes) -> list[str]:
    """What keeps ``body`` from being a valid non-streamed ``chat.completion`` (empty: valid).

    A structural check of the fields clients rely on; tests use it to tell good answers from
    the malformed ones the server injects.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems: list[str] = []
    for key, kind in (("id", str), ("object", str), ("created", int), ("model", str)):
        if not isinstance(data.get(key), kind):
            problems.append(f"{key}: missing or not a {kind.__name__}")
    if data.get("object") != "chat.completion":
        problems.append("object: not 'chat.completion'")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        problems.append("choices: missing or empty")
    else:
        for i, choice in enumerate(choices):
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict) or message.get("role") != "assistant":
                problems.append(f"choices[{i}].message: missing or not from the assistant")
                continue
            calls = message.get("tool_calls")
            if not isinstance(message.get("content"), str) and not calls:
                problems.append(f"choices[{i}].message: neither content nor tool_calls")
            for j, call in enumerate(calls or []):
                function = call.get("function") if isinstance(call, dict) else None
                try:
                    arguments = orjson.loads(function["arguments"]) if function else None
                    ok = isinstance(call["id"], str) and isinstance(arguments, dict)
                except (KeyError, TypeError, orjson.JSONDecodeError):
                    ok = False
                if not ok:
                    problems.append(f"choices[{i}].message.tool_calls[{j}]: malformed")
            if choice.get("finish_reason") not in ("stop", "length", "tool_calls"):
                problems.append(f"choices[{i}].finish_reason: unknown")
    usage = data.get("usage")
    if not isinstance(usage, dict) or not all(
        isinstance(usage.get(k), int)
        for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    ):
        problems.append("usage: missing or incomplete")
    return problems
