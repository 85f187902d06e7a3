"""The seam between the agent loop and governance: what the loop asks before it acts.

The agent loop builds an :class:`Action` before every LLM call and every tool call and asks a
:class:`PolicyHook`; the policy engine (``pilothouse.runtime.policies``) implements the hook.
After an LLM call the loop reports the real cost with :meth:`PolicyHook.settle`, so spend
counters that were charged an estimate are corrected.

Kept deliberately small: the loop knows nothing of individual policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["Action", "ActionKind", "AllowAll", "PolicyHook", "PolicyResult", "Verdict"]


class ActionKind(StrEnum):
    """What the agent is about to do."""

    REQUEST = "request"
    """A new request is admitted (checked once, before the first step)."""
    LLM_CALL = "llm_call"
    """A call to a model."""
    TOOL_CALL = "tool_call"
    """A call to a tool the model asked for."""


class Verdict(StrEnum):
    """A policy's answer."""

    ALLOWED = "allowed"
    DENIED = "denied"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True)
class Action:
    """An action about to be taken, with what the policies need to judge it."""

    kind: ActionKind
    agent_id: str
    request_id: str
    step: int
    input_text: str = ""
    """The user's input (REQUEST, LLM_CALL) or the tool arguments as JSON (TOOL_CALL)."""
    tool_name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    """Tool arguments, or the model name and parameters of an LLM call."""
    estimated_cost_usd: float = 0.0
    estimated_tokens: int = 0
    user: str | None = None
    """End user the request is on behalf of, when the caller says."""
    tenant: str | None = None
    """Tenant the request belongs to, when the caller says."""
    steps_so_far: int = 0
    tool_calls_so_far: int = 0
    tokens_so_far: int = 0
    approved: bool = False
    """A human approved this action after an escalation: escalation rules let it pass."""


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """A verdict, the policy that gave it, and why."""

    verdict: Verdict
    policy: str = ""
    reason: str = ""
    dry_run: bool = False
    """The verdict was not ALLOWED but the policy runs in dryRun: the action proceeds."""
    retry_after_seconds: float | None = None
    """For a denial that retrying later would pass (a rate limit): how much later."""

    @property
    def allowed(self) -> bool:
        """Whether the action may proceed."""
        return self.verdict is Verdict.ALLOWED or self.dry_run


ALLOWED = PolicyResult(Verdict.ALLOWED)


class PolicyHook(Protocol):
    """What the agent loop asks before acting."""

    async def check(self, action: Action) -> PolicyResult:
        """Judge an action. Must not raise: failures are verdicts (fail closed)."""
        ...

    async def settle(self, action: Action, actual_cost_usd: float) -> None:
        """Report the real cost of an allowed LLM call."""
        ...


class AllowAll:
    """The hook of an agent without policies."""

    async def check(self, action: Action) -> PolicyResult:
        return ALLOWED

    async def settle(self, action: Action, actual_cost_usd: float) -> None:
        return None
