"""Tools the model may call, executed as HTTP requests, with their arguments checked first.

Why: a model's tool call is untrusted input. Before anything goes out, :meth:`Toolbox.prepare`
checks that the tool exists and that the arguments are a JSON object valid against the tool's
JSON Schema; the agent loop then asks the policy hook, and :meth:`Toolbox.execute` makes the
HTTP call (GET sends the arguments as query parameters, other methods as a JSON body; static
headers plus headers read from environment variables; the tool's timeout cut to the request's
time left). Every failure is a :class:`errors.ToolError` whose message is what the loop feeds
back to the model as the tool result, so the model can correct itself.

A JSON object response may carry a ``"context"`` object: its keys are merged into the session
context (next to the tool's configured ``contextOnSuccess``). Responses larger than
:data:`MAX_RESPONSE_BYTES`, or declared JSON but not parseable, or not text, are failures.
Each execution is one span ``execute_tool {name}``. Called by :mod:`pilothouse.runtime.agent`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson
from jsonschema import exceptions as schema_errors
from jsonschema import validators
from opentelemetry import trace

from pilothouse.runtime import config, errors, metrics

__all__ = [
    "MAX_RESPONSE_BYTES",
    "OUTCOMES",
    "PreparedCall",
    "ToolResult",
    "Toolbox",
    "count",
    "start_series",
    "validate_arguments",
]

_tracer = trace.get_tracer("pilothouse.runtime")

MAX_RESPONSE_BYTES: Final = 256 * 1024
"""Largest tool response read; a larger one fails (the model could not use it anyway)."""
_MAX_SCHEMA_ERRORS: Final = 5
_ERROR_BODY_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A tool call whose tool exists and whose arguments validate."""

    tool: config.ToolConfig
    call_id: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returned: parsed JSON, or text; and context updates for the session."""

    value: Any
    context: dict[str, Any] = field(default_factory=dict)

    def to_message_content(self) -> str:
        return self.value if isinstance(self.value, str) else orjson.dumps(self.value).decode()


OUTCOMES: Final = (
    "ok",
    "denied",
    "escalated",
    errors.ToolArgumentsInvalid.reason,
    errors.ToolCallFailed.reason,
)
"""Values of the ``outcome`` label of a configured tool's calls (an unknown tool's calls are
counted under :data:`metrics.UNKNOWN_TOOL_LABEL` with ``unknown_tool``)."""


def start_series(names: Iterable[str]) -> None:
    """Create every ``pilothouse_tool_calls_total`` series of these tools at 0, so the first
    failure of a tool is an increase Prometheus sees rather than a series born at 1."""
    for name in names:
        for outcome in OUTCOMES:
            metrics.TOOL_CALLS.labels(name, outcome)
    metrics.TOOL_CALLS.labels(metrics.UNKNOWN_TOOL_LABEL, errors.UnknownTool.reason)


def count(tool: str, outcome: str, known: bool = True) -> None:
    """Count one call in ``pilothouse_tool_calls_total`` (unknown tools under one label)."""
    metrics.TOOL_CALLS.labels(tool if known else metrics.UNKNOWN_TOOL_LABEL, outcome).inc()


def _describe_schema_error(error: schema_errors.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
    return f"{where}: {error.message}"


def validate_arguments(
    tool: config.ToolConfig, arguments: str, validator: Any | None = None
) -> dict[str, Any]:
    """The arguments as a dict, or :class:`errors.ToolArgumentsInvalid` saying what is wrong."""
    try:
        parsed = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError as e:
        raise errors.ToolArgumentsInvalid(
            f"arguments of {tool.name} are not valid JSON: {e}", tool=tool.name
        ) from e
    if not isinstance(parsed, dict):
        raise errors.ToolArgumentsInvalid(
            f"arguments of {tool.name} must be a JSON object, got {type(parsed).__name__}",
            tool=tool.name,
        )
    if validator is None:
        validator = validators.validator_for(tool.parameters)(tool.parameters)
    problems = sorted(validator.iter_errors(parsed), key=lambda e: list(e.absolute_path))
    if problems:
        listed = "; ".join(_describe_schema_error(p) for p in problems[:_MAX_SCHEMA_ERRORS])
        more = len(problems) - _MAX_SCHEMA_ERRORS
        suffix = f" (and {more} more)" if more > 0 else ""
        raise errors.ToolArgumentsInvalid(
            f"arguments of {tool.name} do not match its schema: {listed}{suffix}",
            tool=tool.name,
        )
    return parsed


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class Toolbox:
    """The configured tools: their definitions for the model, validation and execution."""

    def __init__(
        self,
        tools: Sequence[config.ToolConfig],
        *,
        http_client: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._tools = {t.name: t for t in tools}
        start_series(self._tools)
        self._validators = {
            t.name: validators.validator_for(t.parameters)(t.parameters) for t in tools
        }
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient()
        self._environ = os.environ if environ is None else environ
        self.definitions: list[dict[str, Any]] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
        """The ``tools`` parameter of a Chat Completions request."""

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    def knows(self, name: str) -> bool:
        return name in self._tools

    def prepare(self, call_id: str, name: str, arguments: str) -> PreparedCall:
        """Check the tool exists and the arguments validate; raise a :class:`errors.ToolError`."""
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(sorted(self._tools)) or "none"
            raise errors.UnknownTool(
                f"there is no tool named {name!r}; available tools: {available}", tool=name
            )
        parsed = validate_arguments(tool, arguments, self._validators[name])
        return PreparedCall(tool=tool, call_id=call_id, arguments=parsed)

    def _headers(self, tool: config.ToolConfig) -> dict[str, str]:
        headers = {"accept": "application/json", **tool.headers}
        for header, variable in tool.headers_from_env.items():
            value = self._environ.get(variable)
            if value is None:
                raise errors.ToolCallFailed(
                    f"{tool.name} is not configured: the variable {variable} for header "
                    f"{header} is not set",
                    tool=tool.name,
                )
            headers[header] = value
        return headers

    async def execute(self, call: PreparedCall, *, time_limit: float) -> ToolResult:
        """Make the HTTP call; raise :class:`errors.ToolCallFailed` on any failure."""
        tool = call.tool
        with _tracer.start_as_current_span(
            f"execute_tool {tool.name}",
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool.name,
                "gen_ai.tool.call.id": call.call_id,
                "gen_ai.tool.type": "function",
            },
        ) as span:
            try:
                return await self._execute(call, min(time_limit, tool.timeout_seconds))
            except errors.ToolCallFailed:
                span.set_attribute("error.type", "tool_error")
                raise

    async def _execute(self, call: PreparedCall, time_limit: float) -> ToolResult:
        tool = call.tool
        if time_limit <= 0:
            raise errors.ToolCallFailed(f"{tool.name}: no time left for the call", tool=tool.name)
        request = self._http.build_request(
            tool.method,
            tool.url,
            headers=self._headers(tool),
            params=(
                {k: _query_value(v) for k, v in call.arguments.items()}
                if tool.method == "GET"
                else None
            ),
            content=None if tool.method == "GET" else orjson.dumps(call.arguments),
            timeout=time_limit,
        )
        if tool.method != "GET":
            request.headers["content-type"] = "application/json"
        try:
            async with asyncio.timeout(time_limit):
                response = await self._http.send(request, stream=True)
                try:
                    body = await self._read_bounded(response, tool)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as e:
            raise errors.ToolCallFailed(
                f"{tool.name} did not answer within {time_limit:.3g}s", tool=tool.name
            ) from e
        except httpx.HTTPError as e:
            raise errors.ToolCallFailed(
                f"{tool.name} could not be reached: {type(e).__name__}", tool=tool.name
            ) from e
        if response.status_code >= 400:
            excerpt = body[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
            raise errors.ToolCallFailed(
                f"{tool.name} answered HTTP {response.status_code}"
                + (f": {excerpt}" if excerpt else ""),
                tool=tool.name,
            )
        return self._parse(tool, response.headers.get("content-type", ""), body)

    @staticmethod
    async def _read_bounded(response: httpx.Response, tool: config.ToolConfig) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise errors.ToolCallFailed(
                    f"{tool.name} answered more than {MAX_RESPONSE_BYTES} bytes", tool=tool.name
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(tool: config.ToolConfig, content_type: str, body: bytes) -> ToolResult:
        if "json" in content_type.lower():
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise errors.ToolCallFailed(
                    f"{tool.name} answered malformed JSON: {e}", tool=tool.name
                ) from e
        else:
            try:
                value = body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise errors.ToolCallFailed(
                    f"{tool.name} answered a body that is not text ({content_type or 'no type'})",
                    tool=tool.name,
                ) from e
        context: dict[str, Any] = dict(tool.context_on_success)
        if isinstance(value, dict) and isinstance(value.get("context"), dict):
            context.update(value["context"])
        return ToolResult(value=value, context=context)
