"""The runtime's error hierarchy: one base, in families.

Callers catch a family, not a library's exception: third-party errors are wrapped at the
boundary with ``raise ... from e``.

    PilothouseError
    ├── UsageError                 a user's bad input: config, request, dataset (say what, where)
    │   └── ConfigError            a runtime config file that does not validate
    └── RuntimeFailure             something outside the user's control failed
        └── DependencyUnavailable  Redis, PostgreSQL or an LLM endpoint cannot be reached
"""

from __future__ import annotations


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
