"""The rule-based answer of last resort: first matching rule (case-insensitive search), else the
default response."""

from __future__ import annotations

import pytest

from pilothouse.runtime import config, fallback

CFG = config.FallbackConfig(
    response="We are having trouble right now, a human will follow up.",
    rules=(
        config.FallbackRule(pattern=r"\brefund|return\b", response="Returns: see /returns."),
        config.FallbackRule(pattern=r"^\s*(hi|hello)\b", response="Hello! We'll be right back."),
        config.FallbackRule(pattern=r"return", response="never reached: the first rule wins"),
    ),
)


@pytest.mark.parametrize(
    ("text", "answer", "rule"),
    [
        ("I want to RETURN my order", "Returns: see /returns.", 0),
        ("where is my refund?", "Returns: see /returns.", 0),
        ("Hello there", "Hello! We'll be right back.", 1),
        ("say hello", "We are having trouble right now, a human will follow up.", None),
        ("What is 2+2?", "We are having trouble right now, a human will follow up.", None),
    ],
)
def test_first_matching_rule_wins_else_the_default(
    text: str, answer: str, rule: int | None
) -> None:
    assert fallback.Rules(CFG).answer(text) == fallback.RuleAnswer(answer, rule)


def test_no_rules_gives_the_default() -> None:
    rules = fallback.Rules(config.FallbackConfig())
    assert rules.answer("anything") == fallback.RuleAnswer(config.DEFAULT_FALLBACK_RESPONSE, None)


def test_an_invalid_pattern_is_rejected_by_the_config_with_its_text() -> None:
    with pytest.raises(ValueError, match=r"invalid regular expression '\(unclosed'"):
        config.FallbackRule(pattern="(unclosed", response="x")
