"""The runtime's error hierarchy: one base, in families.

Callers catch a family, not a library's exception: third-party errors are wrapped at the
boundary with ``raise ... from e``.

    PilothouseError
    ├── UsageError                 a user's bad input: config, request, dataset (say what, where)
    │   └── ConfigError            a runtime config file that does not validate
    └── RuntimeFailure             something outside the user's control failed
        ├── DependencyUnavailable  Redis, PostgreSQL or an LLM endpoint cannot be reached
        ├── LLMError               a call to a model failed (``model`` names the endpoint)
        │   ├── TransientLLMError  worth retrying: timeout, connection, 429, 5xx
        │   │   ├── LLMTimeout
        │   │   ├── LLMConnectionError
        │   │   ├── LLMRateLimited     carries ``retry_after`` seconds (None if not given)
        │   │   └── LLMServerError     5xx
        │   ├── PermanentLLMError  retrying the same model will not help: other 4xx, garbage
        │   │   ├── LLMRequestRejected
        │   │   ├── LLMRequestInvalid  the request's own body was refused (any status)
        │   │   │   └── LLMContextOverflow  the input does not fit the model's context
        │   │   └── LLMMalformedResponse
        │   ├── LLMEmptyAnswer     neither text nor tool calls: retried once, then next model
        │   ├── CircuitOpen        the model's breaker is open: no call was made
        │   └── DeadlineExceeded   the request's deadline leaves no time for (another) call
        └── ToolError              a tool call could not be made or failed
            ├── UnknownTool
            ├── ToolArgumentsInvalid
            └── ToolCallFailed     timeout, connection error, HTTP error status, garbage body
"""

from __future__ import annotations

__all__ = [
    "CircuitOpen",
    "ConfigError",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "LLMConnectionError",
    "LLMContextOverflow",
    "LLMEmptyAnswer",
    "LLMError",
    "LLMMalformedResponse",
    "LLMRateLimited",
    "LLMRequestInvalid",
    "LLMRequestRejected",
    "LLMServerError",
    "LLMTimeout",
    "PermanentLLMError",
    "PilothouseError",
    "RuntimeFailure",
    "ToolArgumentsInvalid",
    "ToolCallFailed",
    "ToolError",
    "TransientLLMError",
    "UnknownTool",
    "UsageError",
]


class PilothouseError(Exception):
    """Base of every error raised on purpose by Pilothouse."""


class UsageError(PilothouseError):
    """The user's input is wrong; the message says what and where."""


class ConfigError(UsageError):
    """A runtime configuration that does not validate."""


class RuntimeFailure(PilothouseError):
    """Something outside the user's control failed."""


class DependencyUnavailable(RuntimeFailure):
    """A service the runtime needs (Redis, PostgreSQL, an LLM endpoint) cannot be reached."""


# --- LLM calls (raised by pilothouse.runtime.llm, handled by retries and fallback) ---


class LLMError(RuntimeFailure):
    """A call to a model failed. ``model`` is the endpoint key (``endpoint#name``)."""

    reason = "llm_error"
    """Short, stable code: the ``reason`` label of metrics and ``AgentResult.fallback_reason``."""

    def __init__(self, message: str, *, model: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status = status


class TransientLLMError(LLMError):
    """Worth retrying (after a backoff): the same call may succeed later."""


class LLMTimeout(TransientLLMError):
    """The model did not answer within the per-call timeout."""

    reason = "timeout"


class LLMConnectionError(TransientLLMError):
    """The endpoint could not be reached or dropped the connection."""

    reason = "connection_error"


class LLMRateLimited(TransientLLMError):
    """HTTP 429. ``retry_after`` is the server's ``Retry-After`` in seconds, if it sent one."""

    reason = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, model=model, status=status)
        self.retry_after = retry_after


class LLMServerError(TransientLLMError):
    """HTTP 5xx (or 408)."""

    reason = "server_error"


class PermanentLLMError(LLMError):
    """Retrying the same call on the same model will not help."""


class LLMRequestRejected(PermanentLLMError):
    """HTTP 4xx other than 408 and 429: bad request, bad key, unknown model..."""

    reason = "rejected"


class LLMRequestInvalid(PermanentLLMError):
    """The server refused the request's own body (a validation error, a message it cannot
    read), whatever status it used for it (400, 422, or a 500 from servers that answer a
    malformed message that way). The endpoint is healthy: not held against its breaker."""

    reason = "invalid_request"


class LLMContextOverflow(LLMRequestInvalid):
    """The conversation does not fit the model's context window. ``limit_tokens`` and
    ``requested_tokens`` are the numbers the server gave, when it gave them."""

    reason = "context_length_exceeded"

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status: int | None = None,
        limit_tokens: int | None = None,
        requested_tokens: int | None = None,
    ) -> None:
        super().__init__(message, model=model, status=status)
        self.limit_tokens = limit_tokens
        self.requested_tokens = requested_tokens


class LLMEmptyAnswer(LLMError):
    """A 2xx completion with neither text nor tool calls: an incomplete response. Retried once
    at once (same deadline), then the next model; not held against the breaker."""

    reason = "empty_response"


class LLMMalformedResponse(PermanentLLMError):
    """A 2xx answer that is not a valid chat completion."""

    reason = "malformed_response"


class CircuitOpen(LLMError):
    """The model's circuit breaker is open: the call was not made."""

    reason = "circuit_open"


class DeadlineExceeded(LLMError):
    """The request's deadline leaves no time for (another) call or wait."""

    reason = "deadline_exceeded"


# --- tool calls (raised by pilothouse.runtime.tools, fed back to the model by the loop) ---


class ToolError(RuntimeFailure):
    """A tool call could not be made or failed; the message is what the model is told."""

    reason = "error"

    def __init__(self, message: str, *, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


class UnknownTool(ToolError):
    """The model asked for a tool that is not configured."""

    reason = "unknown_tool"


class ToolArgumentsInvalid(ToolError):
    """The arguments are not JSON or do not match the tool's JSON schema."""

    reason = "invalid_arguments"


class ToolCallFailed(ToolError):
    """The tool timed out, was unreachable, answered an error status or an unusable body."""

    reason = "failed"
