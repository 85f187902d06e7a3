"""The Compliance policy section: personal data in inputs (``blockPII``) and blocked topics.

Redaction (``redactPII``) is not a verdict: the audit writer and the JSON logs apply
:func:`pilothouse.runtime.policies.pii.redact`. This section only refuses requests, checked as
they are admitted. Topics are words or phrases matched case-insensitively on word boundaries
(``"crypto"`` does not match ``"cryptography"``; list both to block both).
"""

from __future__ import annotations

import re
from typing import Final

from pilothouse.runtime import config, hooks
from pilothouse.runtime.policies import findings, pii

__all__ = ["ComplianceSection", "topic_pattern"]

_KINDS: Final = frozenset({hooks.ActionKind.REQUEST})


def topic_pattern(topics: tuple[str, ...]) -> re.Pattern[str] | None:
    """One compiled alternation of the topics (whitespace inside a phrase matches any run)."""
    parts = [r"\s+".join(re.escape(w) for w in t.split()) for t in topics if t.strip()]
    if not parts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


class ComplianceSection:
    """:class:`config.CompliancePolicy`, compiled."""

    name = "compliance"
    kinds = _KINDS

    def __init__(self, spec: config.CompliancePolicy) -> None:
        self.block_pii = spec.block_pii
        self.redact_pii = spec.redact_pii
        self.topics = topic_pattern(spec.blocked_topics)

    def check(self, action: hooks.Action) -> findings.Finding | None:
        text = action.input_text
        if self.block_pii:
            kinds = pii.contains_pii(text)
            if kinds:
                return findings.denied(
                    self.name, f"the input contains personal data ({', '.join(kinds)})"
                )
        if self.topics is not None:
            m = self.topics.search(text)
            if m:
                return findings.denied(
                    self.name,
                    f"the input touches a blocked topic ({' '.join(m.group().lower().split())!r})",
                )
        return None
