"""The operator's errors, in the families of :mod:`pilothouse.runtime.errors`.

Reconciliation decides what to do by family: a user's spec the schema let through but the
operator cannot render is reported (``Stalled`` + an Event) and not retried until the spec
changes; a failing dependency (the API server, Redis) is retried with a backoff.

    PilothouseError
    ├── UsageError
    │   ├── SpecError              an AgentDeployment / AgentPolicy that cannot be rendered;
    │   │                          ``reason`` is a documented condition reason
    │   └── SchemaConversionError  a pydantic model the CRD generator cannot express
    └── RuntimeFailure
        ├── KubeRejected           the API server refused a request for good (a 4xx other
        │                          than 404 / 409 / 429): ``status`` and the server's message
        └── DependencyUnavailable
            ├── KubeUnavailable    the API server failed, timed out or conflicted (retry)
            └── BacklogUnavailable the agent's queue backlog cannot be read from Redis
"""

from __future__ import annotations

from pilothouse.runtime import errors

__all__ = [
    "BacklogUnavailable",
    "KubeRejected",
    "KubeUnavailable",
    "SchemaConversionError",
    "SpecError",
]


class SpecError(errors.UsageError):
    """A resource's spec cannot be rendered; the message names the field."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SchemaConversionError(errors.UsageError):
    """A JSON schema construct has no structural (apiextensions v1) equivalent."""


class KubeUnavailable(errors.DependencyUnavailable):
    """The Kubernetes API server could not be reached or answered 5xx / 429 / a conflict."""


class KubeRejected(errors.RuntimeFailure):
    """The API server refused a request for good (a 4xx other than 404/409/429)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the API server refused the request ({status}): {message}")
        self.status = status
        self.server_message = message


class BacklogUnavailable(errors.DependencyUnavailable):
    """An agent's backlog cannot be read (no Redis URL, Redis down, a bad Secret)."""
