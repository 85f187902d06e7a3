"""Whether a configured model is among those its server lists."""

from __future__ import annotations

import pytest

from pilothouse.runtime import modelchecks


@pytest.mark.parametrize(
    ("listed", "verdict"),
    [
        (["gpt-4o-mini", "gpt-4o"], "offered"),
        (["openai/gpt-4o-mini"], "offered"),
        (["gpt-4o"], "not_offered"),
        ([], "not_offered"),
        (None, "unknown"),
    ],
)
def test_the_configured_name_is_looked_up_in_the_list(
    listed: list[str] | None, verdict: str
) -> None:
    assert modelchecks.judge("gpt-4o-mini", listed) == verdict
