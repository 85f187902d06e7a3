"""Errors of the mock LLM server, in families under the runtime's hierarchy.

Raised by the pure modules (a bad scenario file, a bad request body, a bad fault setting) and
by the launcher (a server that does not come up). The server turns the usage errors into
OpenAI-style error bodies; the command line prints them.

    PilothouseError
    └── MockLLMError                 every error of this package
        ├── ScenarioError            (UsageError) a scenario file or rule that does not load
        ├── FaultConfigError         (UsageError) fault settings out of range
        ├── InvalidRequestError      (UsageError) a Chat Completions request the server rejects
        └── LaunchError              (RuntimeFailure) the server process did not start or answer
"""

from __future__ import annotations

from pilothouse.runtime import errors

__all__ = [
    "FaultConfigError",
    "InvalidRequestError",
    "LaunchError",
    "MockLLMError",
    "ScenarioError",
]


class MockLLMError(errors.PilothouseError):
    """Base of every error raised on purpose by the mock LLM package."""


class ScenarioError(MockLLMError, errors.UsageError):
    """A scenario that does not load; the message names the source and the rule."""


class FaultConfigError(MockLLMError, errors.UsageError):
    """Fault settings that are out of range or unknown; the message names the setting."""


class InvalidRequestError(MockLLMError, errors.UsageError):
    """A request body the server rejects with 400, in OpenAI's error shape.

    ``param`` names the offending field as a path (``messages[2].role``), ``code`` is a short
    machine-readable reason (``missing_required_parameter``, ``invalid_type``, ...).
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class LaunchError(MockLLMError, errors.RuntimeFailure):
    """The mock LLM process exited, or did not report ready in time."""
