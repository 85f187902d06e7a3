"""The Safety policy section: input size, deny patterns, prompt injection, tool allowlist.

Checked on the request as it is admitted (the user's input) and on every tool call (the tool's
name against ``allowedTools``, its arguments against ``denyPatterns``). Pure: patterns are
compiled once when the engine is built.
"""

from __future__ import annotations

import re
from typing import Final

from pilothouse.runtime import config, hooks
from pilothouse.runtime.policies import findings, injection

__all__ = ["SafetySection"]

_KINDS: Final = frozenset({hooks.ActionKind.REQUEST, hooks.ActionKind.TOOL_CALL})


class SafetySection:
    """:class:`config.SafetyPolicy`, compiled."""

    name = "safety"
    kinds = _KINDS

    def __init__(self, spec: config.SafetyPolicy) -> None:
        self.max_input_chars = spec.max_input_chars
        self.deny_patterns = tuple(
            (p, re.compile(p, re.IGNORECASE | re.MULTILINE)) for p in spec.deny_patterns
        )
        self.block_prompt_injection = spec.block_prompt_injection
        self.allowed_tools = None if spec.allowed_tools is None else frozenset(spec.allowed_tools)

    def check(self, action: hooks.Action) -> findings.Finding | None:
        if action.kind is hooks.ActionKind.TOOL_CALL:
            return self._check_tool(action)
        text = action.input_text
        if self.max_input_chars is not None and len(text) > self.max_input_chars:
            return findings.denied(
                self.name,
                f"the input is {len(text)} characters long; the limit is {self.max_input_chars}",
            )
        denied = self._deny_pattern(text)
        if denied is not None:
            return denied
        if self.block_prompt_injection:
            heuristic = injection.detect(text)
            if heuristic is not None:
                return findings.denied(
                    self.name, f"the input looks like prompt injection ({heuristic})"
                )
        return None

    def _check_tool(self, action: hooks.Action) -> findings.Finding | None:
        tool = action.tool_name or ""
        if self.allowed_tools is not None and tool not in self.allowed_tools:
            allowed = ", ".join(sorted(self.allowed_tools)) or "none"
            return findings.denied(
                self.name, f"the tool {tool!r} is not in the allowed tools ({allowed})"
            )
        return self._deny_pattern(action.input_text, what="the tool arguments")

    def _deny_pattern(self, text: str, what: str = "the input") -> findings.Finding | None:
        for source, pattern in self.deny_patterns:
            if pattern.search(text):
                return findings.denied(self.name, f"{what} matches the deny pattern /{source}/")
        return None
