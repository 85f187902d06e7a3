"""Request counters of the mock LLM, read by tests through ``GET /admin/stats``.

Tests assert on them that a client really sent (or, behind an open circuit breaker, really did
not send) traffic: every request to the model API is counted when it arrives, by path, by
model, by outcome and by response status; the latency it added on purpose (injected latency
and scenario delays) is summed, so a test checks delays by what the server was told to do, not
by a stopwatch on a loaded machine. Admin and health endpoints are not counted, so
reading the stats does not change them. ``POST /admin/reset`` zeroes everything.

The server is one asyncio loop, so plain integers suffice: no locks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["OUTCOMES", "Stats"]

OUTCOMES = (
    "ok",
    "hang",
    "rate_limit",
    "error",
    "malformed",
    "bad_request",
    "unauthorized",
    "not_found",
)
"""``not_found`` covers unknown paths and methods."""


class Stats:
    """Counters since the start or the last reset."""

    __slots__ = (
        "by_model",
        "by_outcome",
        "by_path",
        "by_rule",
        "by_status",
        "by_tool_choice",
        "delayed",
        "delayed_ms",
        "in_flight",
        "total",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self._zero()

    def _zero(self) -> None:
        self.total = 0
        self.by_path: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_rule: Counter[str] = Counter()
        self.delayed = 0
        self.delayed_ms = 0.0
        self.by_tool_choice: Counter[str] = Counter()

    def received(self, path: str) -> None:
        """A request arrived at ``path``."""
        self.total += 1
        self.by_path[path] += 1

    def model(self, name: str) -> None:
        """A valid completion request named ``name`` as its model."""
        self.by_model[name] += 1

    def outcome(self, name: str) -> None:
        """How the request was handled (one of :data:`OUTCOMES`)."""
        self.by_outcome[name] += 1

    def status(self, code: int) -> None:
        """The status the server answered with (hung requests have none)."""
        self.by_status[code] += 1

    def tool_choice(self, choice: str | None) -> None:
        """The ``tool_choice`` of a valid completion request that offered tools (``unset``
        when it sent none; a named function counts under its name)."""
        self.by_tool_choice[choice or "unset"] += 1

    def rule(self, name: str) -> None:
        """Which scenario rule produced an answer."""
        self.by_rule[name] += 1

    def delay(self, seconds: float) -> None:
        """The server held an answer back on purpose for ``seconds``."""
        self.delayed += 1
        self.delayed_ms += seconds * 1000.0

    def reset(self) -> None:
        """Zero every counter (requests in flight stay in flight)."""
        self._zero()

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data (statuses as string keys)."""
        return {
            "total": self.total,
            "in_flight": self.in_flight,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "by_outcome": {k: self.by_outcome[k] for k in OUTCOMES if self.by_outcome[k]},
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_rule": dict(self.by_rule),
            "delayed": self.delayed,
            "delayed_ms": round(self.delayed_ms, 3),
            "by_tool_choice": dict(self.by_tool_choice),
        }
