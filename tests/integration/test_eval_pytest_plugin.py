"""The pytest plugin, used as a user would (pytester runs a user's test file in a child pytest
that loads the plugin from its entry point): ``test_quality_on_dataset`` in a few lines against
a running runtime, with a failure message that lists the failing examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester", "eval_support"]
pytestmark = pytest.mark.integration

TOKEN = "eval-test-token"

USER_TESTS = """
import pytest

def test_quality_on_dataset(pilothouse_eval):
    report = pilothouse_eval.run("customer_support_v1")
    assert report.score > 0.8, report.explain()

def test_quality_gate_on_a_broken_agent(pilothouse_eval):
    pilothouse_eval.check("customer_support_v1", url="{forgetful}", threshold=0.8)

def test_a_dataset_next_to_the_test_file(pilothouse_eval):
    report = pilothouse_eval.run("mine.jsonl", concurrency=1)
    assert [e.id for e in report.examples] == ["two-plus-two"]
    assert report.score == 1.0

def test_without_an_agent_the_fixture_says_what_to_pass(pilothouse_eval):
    pilothouse_eval.url = None
    pilothouse_eval.run("mine.jsonl")

async def test_async_tests_await_arun(pilothouse_eval):
    report = await pilothouse_eval.arun("mine.jsonl")
    assert report.examples[0].turns[0].answer.endswith("The answer is 4.")
"""


def test_a_user_evaluates_their_agent_from_pytest(
    pytester: pytest.Pytester, runtime_url: str, forgetful_runtime_url: str
) -> None:
    pytester.makepyfile(test_agent_quality=USER_TESTS.replace("{forgetful}", forgetful_runtime_url))
    (pytester.path / "mine.jsonl").write_text(
        json.dumps({"id": "two-plus-two", "input": "What is 2+2?", "expect": {"contains": "4"}})
        + "\n"
    )
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    reports = pytester.path / "eval-reports"
    result = pytester.runpytest_subprocess(
        "--pilothouse-url",
        runtime_url,
        "--pilothouse-token",
        TOKEN,
        "--pilothouse-report-dir",
        str(reports),
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_quality_gate_on_a_broken_agent*",
            "*quality score 0.7* < 0.800",
            "*customer_support_v1: score 0.7* (threshold 0.80), 22/30 examples passed",
            "*FAIL weather-tokyo: tool_used: weather_api was not called (tools called: none)*",
            "*FAIL return-flow: *context.return_initiated is missing*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*pilothouse_eval: no agent to evaluate; pass --pilothouse-url or --pilothouse-config*"]
    )
    saved = sorted(p.name for p in Path(reports).iterdir())
    assert len(saved) == 4  # every run, the failed gate's too
    first = json.loads((reports / saved[0]).read_text())
    assert first["format"] == "pilothouse.eval/v1"
