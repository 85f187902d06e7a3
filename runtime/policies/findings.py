"""What one section of a policy says about an action, and the shape every pure section has.

The engine (:mod:`pilothouse.runtime.policies.engine`) walks each policy's sections in a fixed
order and asks each for a :class:`Finding`; ``None`` means the section allows the action. Pure
sections (safety, compliance, resource limits, escalation) implement :class:`Section` and never
do I/O; the budget sections (cost, rate) keep state in Redis and are run by the engine in one
round trip per action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pilothouse.runtime import hooks

__all__ = ["Finding", "Section", "denied", "escalate"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A verdict other than ALLOWED, the section that gave it and a reason a person reads."""

    verdict: hooks.Verdict
    section: str
    reason: str
    retry_after_seconds: float | None = None
    """When retrying later would pass (a rate limit): how much later."""


def denied(section: str, reason: str, *, retry_after_seconds: float | None = None) -> Finding:
    return Finding(hooks.Verdict.DENIED, section, reason, retry_after_seconds)


def escalate(section: str, reason: str) -> Finding:
    return Finding(hooks.Verdict.ESCALATE, section, reason)


class Section(Protocol):
    """A policy section whose decision depends on the action alone."""

    name: str
    """The section's key in the AgentPolicy spec (``safety``, ``compliance``...)."""
    kinds: frozenset[hooks.ActionKind]
    """Action kinds the section looks at; others pass without a call."""

    def check(self, action: hooks.Action) -> Finding | None:
        """A finding when the action is not allowed, else ``None``."""
        ...
