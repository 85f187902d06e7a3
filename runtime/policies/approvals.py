"""The Escalation policy section: actions that wait for a human's approval.

A call to one of the listed ``tools``, or an LLM call whose estimated cost is above
``whenEstimatedCostAboveUsd``, gets ESCALATE, unless the action carries ``approved`` (a human
approved it and the request was resumed). The agent loop turns ESCALATE into a parked request
(:mod:`pilothouse.runtime.escalations`); ``timeoutSeconds`` is read there.
"""

from __future__ import annotations

from typing import Final

from pilothouse.runtime import config, hooks
from pilothouse.runtime.policies import findings

__all__ = ["EscalationSection"]

_KINDS: Final = frozenset({hooks.ActionKind.LLM_CALL, hooks.ActionKind.TOOL_CALL})


class EscalationSection:
    """:class:`config.EscalationPolicy`."""

    name = "escalation"
    kinds = _KINDS

    def __init__(self, spec: config.EscalationPolicy) -> None:
        self.tools = frozenset(spec.tools)
        self.cost_threshold = spec.when_estimated_cost_above_usd
        self.timeout_seconds = spec.timeout_seconds

    def check(self, action: hooks.Action) -> findings.Finding | None:
        if action.approved:
            return None
        if action.kind is hooks.ActionKind.TOOL_CALL:
            if action.tool_name in self.tools:
                return findings.escalate(
                    self.name, f"calls to the tool {action.tool_name!r} need a human's approval"
                )
            return None
        if self.cost_threshold is not None and action.estimated_cost_usd > self.cost_threshold:
            return findings.escalate(
                self.name,
                f"the LLM call is estimated at ${action.estimated_cost_usd:.4f}, above the "
                f"${self.cost_threshold:.4f} that needs a human's approval",
            )
        return None
