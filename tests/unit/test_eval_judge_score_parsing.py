"""The LLM judge's answer is read for a score in [0, 1], in the formats models actually use."""

from __future__ import annotations

import pytest

from pilothouse.runtime.evaluation import judges


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("SCORE: 0.8\nREASON: polite and correct", 0.8),
        ("score = 1", 1.0),
        ("Score: 7/10 - mostly right", 0.7),
        ("The score is 4 / 5.", 0.8),
        ("score: 85%", 0.85),
        ("Reasoning first...\n0.6\n", 0.6),
        ("3/4", 0.75),
        ("SCORE: .5", 0.5),
    ],
)
def test_scores_are_read(answer: str, score: float) -> None:
    assert judges.parse_score(answer) == pytest.approx(score)


@pytest.mark.parametrize(
    "answer",
    ["SCORE: 8", "score: 3/0", "I think it is good", "", "score: 120%", "score: -1"],
)
def test_answers_without_a_usable_score_give_none(answer: str) -> None:
    assert judges.parse_score(answer) is None


def test_the_prompt_carries_the_rubric_the_conversation_and_the_answer() -> None:
    messages = judges.build_messages("Is it polite?", ["hi", "return order 1"], "Sure thing!")
    assert messages[0]["role"] == "system"
    user = messages[-1]
    assert user["role"] == "user"
    assert user["content"].startswith("EVALUATION REQUEST\nRubric: Is it polite?\n")
    assert "User: hi\nUser: return order 1\n" in user["content"]
    assert "Agent answer: Sure thing!" in user["content"]
