"""The OpenAI Chat Completions request: its parsed form, and the validation that builds it.

Pure functions, no I/O: the server calls :func:`parse_chat_request` on every request body;
:mod:`scenarios` reads the resulting :class:`ChatRequest` and answers with a :class:`Reply`,
which :mod:`responses` turns into the wire format. Validation is hand-written rather than a
generic schema so that every rejection names the field (``messages[2].tool_call_id``) the way
OpenAI does, and so the hot path stays cheap at hundreds of requests per second.

Unknown top-level fields (``top_p``, ``seed``, ``user``, ...) are accepted and ignored, as
OpenAI-compatible servers commonly do; the known ones are type-checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from pilothouse.runtime.mockllm import errors

__all__ = [
    "ROLES",
    "ChatRequest",
    "Message",
    "Reply",
    "ToolCall",
    "parse_chat_request",
    "strict_problem",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: Final[frozenset[str]] = frozenset({"system", "developer", "user", "assistant", "tool"})
_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]+$")
"""What a strict server (OpenAI itself) accepts as a message's ``name``."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call, as an assistant message carries it (``arguments`` is JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation, normalised: ``content`` is always text."""

    role: Role
    content: str
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated Chat Completions request."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[str, ...] = ()
    """Names of the function tools offered, in request order."""
    tool_choice: str | None = None
    """``none`` / ``auto`` / ``required``, or the name of the one function forced."""
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    include_usage: bool = False
    tools_chars: int = 0
    """Size of the tool definitions, counted into the prompt tokens."""

    @property
    def offered_tools(self) -> frozenset[str]:
        """The tools the model may call, after ``tool_choice`` narrowed them."""
        if self.tool_choice == "none":
            return frozenset()
        if self.tool_choice not in (None, "auto", "required"):
            return frozenset(t for t in self.tools if t == self.tool_choice)
        return frozenset(self.tools)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model answers: text, tool calls, or both (tool calls win the finish reason)."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    rule: str = "default"
    """Which scenario rule produced the reply (for stats and logs)."""
    latency_s: float = 0.0
    """Extra delay the rule asks for."""


# --- requests -----------------------------------------------------------------------------------


def _fail(
    message: str, param: str | None, code: str = "invalid_type"
) -> errors.InvalidRequestError:
    return errors.InvalidRequestError(message, param=param, code=code)


def _missing(param: str, why: str = "") -> errors.InvalidRequestError:
    """``param`` is required (``why``: a sentence saying so, after the standard one)."""
    message = f"Missing required parameter: '{param}'." + (f" {why}" if why else "")
    return _fail(message, param, "missing_required_parameter")


def _wrong_type(param: str, expected: str, value: object) -> errors.InvalidRequestError:
    """``param`` holds ``value``, which is not ``expected`` (e.g. "an object")."""
    return _fail(
        f"Invalid type for '{param}': expected {expected}, got {_type_name(value)}.", param
    )


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expect_str(value: object, param: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _wrong_type(param, "a string", value)
    if not allow_empty and not value:
        raise _fail(f"Invalid value for '{param}': must not be empty.", param, "invalid_value")
    return value


def _content_text(value: object, param: str) -> str:
    """Message content as text: a string, or an array of content parts (text parts joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts: list[str] = []
        for i, part in enumerate(value):
            p = f"{param}[{i}]"
            if not isinstance(part, dict):
                raise _wrong_type(p, "an object", part)
            kind = part.get("type")
            if not isinstance(kind, str):
                raise _missing(f"{p}.type")
            if kind == "text":
                texts.append(_expect_str(part.get("text"), f"{p}.text"))
        return "".join(texts)
    raise _wrong_type(param, "a string or an array of content parts", value)


def _parse_tool_calls(value: object, param: str) -> tuple[ToolCall, ...]:
    if not isinstance(value, list):
        raise _wrong_type(param, "an array", value)
    calls: list[ToolCall] = []
    for i, raw in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(raw, dict):
            raise _wrong_type(p, "an object", raw)
        if "id" not in raw:
            raise _missing(f"{p}.id")
        call_id = _expect_str(raw["id"], f"{p}.id", allow_empty=False)
        function = raw.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{p}.function")
        name = _expect_str(function.get("name"), f"{p}.function.name", allow_empty=False)
        arguments = function.get("arguments", "")
        arguments = _expect_str(arguments, f"{p}.function.arguments")
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return tuple(calls)


def _parse_message(raw: object, i: int) -> Message:
    param = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise _wrong_type(param, "an object", raw)
    if "role" not in raw:
        raise _missing(f"{param}.role")
    role = raw["role"]
    if not isinstance(role, str) or role not in ROLES:
        raise _fail(
            f"Invalid value for '{param}.role': {role!r}. Supported values are: "
            "'system', 'developer', 'user', 'assistant' and 'tool'.",
            f"{param}.role",
            "invalid_value",
        )
    content_raw = raw.get("content")
    tool_calls: tuple[ToolCall, ...] = ()
    if role == "assistant" and raw.get("tool_calls") is not None:
        tool_calls = _parse_tool_calls(raw["tool_calls"], f"{param}.tool_calls")
    if content_raw is None:
        if role != "assistant" or not tool_calls:
            raise _missing(f"{param}.content")
        content = ""
    else:
        content = _content_text(content_raw, f"{param}.content")
    name = raw.get("name")
    if name is not None:
        name = _expect_str(name, f"{param}.name")
    tool_call_id: str | None = None
    if role == "tool":
        if "tool_call_id" not in raw or raw["tool_call_id"] is None:
            raise _missing(
                f"{param}.tool_call_id",
                "A message with role 'tool' must say which tool call it answers.",
            )
        tool_call_id = _expect_str(raw["tool_call_id"], f"{param}.tool_call_id", allow_empty=False)
    return Message(
        role=role,  # type: ignore[arg-type]  # checked against ROLES above
        content=content,
        name=name,
        tool_call_id=tool_call_id,
        tool_calls=tool_calls,
    )


def _parse_tools(value: object) -> tuple[tuple[str, ...], int]:
    if not isinstance(value, list):
        raise _wrong_type("tools", "an array", value)
    names: list[str] = []
    chars = 0
    for i, raw in enumerate(value):
        p = f"tools[{i}]"
        if not isinstance(raw, dict):
            raise _wrong_type(p, "an object", raw)
        kind = raw.get("type", "function")
        if kind != "function":
            raise _fail(
                f"Invalid value for '{p}.type': {kind!r}. Supported values are: 'function'.",
                f"{p}.type",
                "invalid_value",
            )
        function = raw.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{p}.function")
        if "name" not in function:
            raise _missing(f"{p}.function.name")
        name = _expect_str(function["name"], f"{p}.function.name", allow_empty=False)
        description = function.get("description")
        if description is not None:
            chars += len(_expect_str(description, f"{p}.function.description"))
        parameters = function.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise _wrong_type(f"{p}.function.parameters", "an object", parameters)
            chars += len(orjson.dumps(parameters))
        names.append(name)
        chars += len(name)
    return tuple(names), chars


def _parse_tool_choice(value: object, tools: Sequence[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise _fail(
                f"Invalid value for 'tool_choice': {value!r}. Supported values are: "
                "'none', 'auto', 'required', or an object naming a function.",
                "tool_choice",
                "invalid_value",
            )
        return value
    if isinstance(value, dict):
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise _missing("tool_choice.function.name")
        if name not in tools:
            raise _fail(
                f"Invalid value for 'tool_choice': function {name!r} is not among 'tools'.",
                "tool_choice",
                "invalid_value",
            )
        return name
    raise _wrong_type("tool_choice", "a string or an object", value)


def _optional_int(body: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(key, "an integer", value)
    if value < minimum:
        raise _fail(
            f"Invalid value for '{key}': {value} is below the minimum of {minimum}.",
            key,
            "invalid_value",
        )
    return value


def _optional_number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(key, "a number", value)
    if not low <= value <= high:
        raise _fail(
            f"Invalid value for '{key}': {value} is outside [{low:g}, {high:g}].",
            key,
            "invalid_value",
        )
    return float(value)


def strict_problem(body: bytes) -> str | None:
    """What a strict server refuses in a request that :func:`parse_chat_request` accepted, in
    the words such servers use (so clients can tell the request's fault from the server's),
    or None. See ``FaultConfig.strict``."""
    data = orjson.loads(body)
    open_calls: list[str] = []
    for i, raw in enumerate(data["messages"]):
        role = raw["role"]
        if "content" not in raw:
            return f"messages[{i}] ({role}): missing field `content`"
        content = raw["content"]
        if content is None:
            return (
                f"[json.exception.type_error.302] messages[{i}] ({role}): "
                "type must be string, but is null"
            )
        name = raw.get("name")
        if name is not None and not _NAME.fullmatch(str(name)):
            return (
                f"Invalid value for 'messages[{i}].name': string does not match pattern "
                f"'{_NAME.pattern}'"
            )
        if role == "tool":
            call_id = raw.get("tool_call_id")
            if call_id not in open_calls:
                return (
                    f"messages[{i}]: invalid value for tool_call_id {call_id!r}: it answers no "
                    "earlier unanswered tool call"
                )
            open_calls.remove(call_id)
            continue
        if open_calls:
            return (
                f"messages[{i}]: invalid value for role {role!r}: tool call(s) "
                f"{', '.join(open_calls)} must be answered by tool messages first"
            )
        if role == "assistant":
            open_calls = [c["id"] for c in raw.get("tool_calls") or ()]
    return None


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a request body; raise :class:`errors.InvalidRequestError` naming the problem."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.InvalidRequestError(
            f"We could not parse the JSON body of your request: {e}.", code="invalid_json"
        ) from e
    if not isinstance(data, dict):
        raise _fail(
            f"The request body must be a JSON object, got {_type_name(data)}.", None, "invalid_json"
        )
    if "model" not in data:
        raise _missing("model")
    model = _expect_str(data["model"], "model", allow_empty=False)
    if "messages" not in data:
        raise _missing("messages")
    raw_messages = data["messages"]
    if not isinstance(raw_messages, list):
        raise _wrong_type("messages", "an array", raw_messages)
    if not raw_messages:
        raise _fail(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    messages = tuple(_parse_message(m, i) for i, m in enumerate(raw_messages))
    tools: tuple[str, ...] = ()
    tools_chars = 0
    if data.get("tools") is not None:
        tools, tools_chars = _parse_tools(data["tools"])
    tool_choice = _parse_tool_choice(data.get("tool_choice"), tools)
    max_tokens = _optional_int(data, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _optional_int(data, "max_tokens", minimum=1)
    temperature = _optional_number(data, "temperature", 0.0, 2.0)
    _optional_number(data, "top_p", 0.0, 1.0)
    _optional_int(data, "n", minimum=1)
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    include_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        include_usage = options.get("include_usage") is True
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        temperature=temperature,
        stream=bool(stream),
        include_usage=include_usage,
        tools_chars=tools_chars,
    )
