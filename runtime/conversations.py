"""Chat messages in the one shape every common OpenAI-compatible server accepts.

Why: OpenAI accepts ``{"role": "assistant", "content": null, "tool_calls": [...]}``, but other
servers (older llama.cpp releases, several gateways) validate ``content`` as a string and
answer an error (HTTP 500 ``type must be string, but is null``); omitting the key
fails there too, an empty string works everywhere. So every message the runtime sends, and
every message it keeps in a session, goes through :func:`normalise_message`:

* ``content`` is always a string: ``null`` or a missing key becomes ``""``, an array of content
  parts is kept only as its text parts joined, any other JSON value becomes its JSON text;
* an empty ``tool_calls`` array is removed (some servers reject ``[]``);
* a tool call's ``arguments`` is JSON text (``"{}"`` when empty), ``type`` is ``function``;
* a ``tool`` message keeps its ``tool_call_id``; keys servers do not know are dropped.

:func:`repair_history` applies it to a session's history as loaded and also drops what no
server accepts: a ``tool`` message that answers no earlier tool call, and an assistant turn
whose tool calls were never answered. It says how many messages it changed, so the agent loop
can record the repair. :func:`trim_history` drops the oldest whole turns of a history that
no longer fits the model's context. Pure functions; called by :mod:`pilothouse.runtime.llm`
(before every
call), :mod:`pilothouse.runtime.agent` (history) and :mod:`pilothouse.runtime.sessions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "CHARS_PER_TOKEN",
    "Repair",
    "estimate_tokens",
    "normalise_message",
    "normalise_messages",
    "repair_history",
    "trim_history",
]

_KEPT_KEYS: Final = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return orjson.dumps(content).decode()


def _tool_call(raw: Any, index: int) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        return None
    function = raw.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    arguments = function.get("arguments")
    if arguments is None or arguments == "":
        arguments = "{}"
    elif not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    call_id = raw.get("id")
    return {
        "id": call_id if isinstance(call_id, str) and call_id else f"call_{index}",
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }


def normalise_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """``message`` as every common server accepts it (a new dict; the input is not changed)."""
    out: dict[str, Any] = {k: v for k, v in message.items() if k in _KEPT_KEYS}
    out["content"] = _text(message.get("content"))
    if out.get("role") == "assistant" and "tool_calls" in out:
        raw_calls = out.pop("tool_calls")
        calls = [
            c
            for c in (_tool_call(raw, i) for i, raw in enumerate(raw_calls or ()))
            if c is not None
        ]
        if calls:
            out["tool_calls"] = calls
    else:
        out.pop("tool_calls", None)
    if out.get("role") != "tool":
        out.pop("tool_call_id", None)
    if out.get("name") is None:
        out.pop("name", None)
    return out


def normalise_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every message normalised, in order."""
    return [normalise_message(m) for m in messages]


@dataclass(frozen=True, slots=True)
class Repair:
    """A session history made valid, and what it took."""

    messages: tuple[dict[str, Any], ...]
    changed: int
    """Messages rewritten (e.g. a null ``content``) to the normalised form."""
    dropped: int
    """Messages removed: orphan tool results, tool calls never answered."""

    @property
    def needed(self) -> bool:
        return bool(self.changed or self.dropped)

    def describe(self) -> str:
        return f"{self.changed} message(s) normalised, {self.dropped} dropped"


def repair_history(messages: Sequence[Mapping[str, Any]]) -> Repair:
    """A stored history as a valid conversation: normalised, tool exchanges complete."""
    out: list[dict[str, Any]] = []
    changed = dropped = 0
    open_calls: set[str] = set()
    pending_start: int | None = None  # index in ``out`` of an assistant turn awaiting results

    def close_unanswered() -> None:
        nonlocal dropped, pending_start
        if pending_start is not None and open_calls:
            dropped += len(out) - pending_start
            del out[pending_start:]
        open_calls.clear()
        pending_start = None

    for raw in messages:
        message = normalise_message(raw)
        if message != dict(raw):
            changed += 1
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                dropped += 1
                continue
            open_calls.discard(call_id)
            out.append(message)
            if not open_calls:
                pending_start = None
            continue
        close_unanswered()
        out.append(message)
        if role == "assistant" and message.get("tool_calls"):
            open_calls.update(c["id"] for c in message["tool_calls"])
            pending_start = len(out) - 1
    close_unanswered()
    return Repair(tuple(out), changed, dropped)


CHARS_PER_TOKEN: Final = 4
"""Rough size of a token, to estimate how much history to drop."""


def estimate_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A rough token count of ``messages`` (their JSON size / :data:`CHARS_PER_TOKEN`)."""
    return sum(len(orjson.dumps(dict(m))) for m in messages) // CHARS_PER_TOKEN + 1


def trim_history(
    history: Sequence[Mapping[str, Any]], drop_tokens: int | None
) -> tuple[dict[str, Any], ...]:
    """The newest part of ``history`` left after dropping at least ``drop_tokens`` (estimated)
    from its oldest end, whole turns at a time (the kept part starts with a user message, so no
    tool exchange is cut). ``drop_tokens`` None drops it all."""
    if drop_tokens is None:
        return ()
    starts = [i for i, m in enumerate(history) if m.get("role") == "user"]
    for start in starts:
        if estimate_tokens(history[:start]) >= drop_tokens:
            return tuple(dict(m) for m in history[start:])
    return ()
