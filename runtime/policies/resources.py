"""The ResourceLimits policy section: steps, tokens and tool calls per request.

Judged from the counters the agent loop puts on every :class:`hooks.Action`: an LLM call is
denied when the request already made ``maxSteps`` round trips or when its estimated tokens
would take the request past ``maxTokens``; a tool call is denied when ``maxToolCalls`` calls
were already made.
"""

from __future__ import annotations

from typing import Final

from pilothouse.runtime import config, hooks
from pilothouse.runtime.policies import findings

__all__ = ["ResourceLimitsSection"]

_KINDS: Final = frozenset({hooks.ActionKind.LLM_CALL, hooks.ActionKind.TOOL_CALL})


class ResourceLimitsSection:
    """:class:`config.ResourceLimitsPolicy`."""

    name = "resourceLimits"
    kinds = _KINDS

    def __init__(self, spec: config.ResourceLimitsPolicy) -> None:
        self.spec = spec

    def check(self, action: hooks.Action) -> findings.Finding | None:
        spec = self.spec
        if action.kind is hooks.ActionKind.TOOL_CALL:
            if spec.max_tool_calls is not None and action.tool_calls_so_far >= spec.max_tool_calls:
                return findings.denied(
                    self.name,
                    f"the request already made {action.tool_calls_so_far} tool call(s); "
                    f"the limit is {spec.max_tool_calls}",
                )
            return None
        if spec.max_steps is not None and action.steps_so_far >= spec.max_steps:
            return findings.denied(
                self.name,
                f"the request already made {action.steps_so_far} LLM call(s); "
                f"the limit is {spec.max_steps}",
            )
        if spec.max_tokens is not None:
            total = action.tokens_so_far + action.estimated_tokens
            if total > spec.max_tokens:
                return findings.denied(
                    self.name,
                    f"the request would use about {total} tokens "
                    f"({action.tokens_so_far} so far + {action.estimated_tokens} estimated); "
                    f"the limit is {spec.max_tokens}",
                )
        return None
