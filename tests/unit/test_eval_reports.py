"""Reports of a run: JUnit XML a CI system reads (a testcase per example, failure message =
reason), Markdown, the terminal table, and progress that is a bar only on a terminal."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

from pilothouse.runtime.evaluation import progress, reports, results


def _example(id: str, *, passed: bool, error: str | None = None) -> results.ExampleResult:
    return results.ExampleResult(
        id=id,
        line=3,
        tags=["weather"],
        score=1.0 if passed else (0.0 if error else 0.5),
        passed=passed,
        error=error,
        expectations=[]
        if error
        else [
            results.ExpectationResult(
                kind="tool_used",
                score=1.0 if passed else 0.0,
                passed=passed,
                reason=None if passed else "weather_api was not called <&> \x01",
            )
        ],
        turns=[results.TurnRecord(input="weather in Tokyo?", request_id="r", answer="It's sunny")],
        elapsed_ms=12.0,
    )


def _report() -> results.RunReport:
    examples = [
        _example("ok-1", passed=True),
        _example("bad", passed=False),
        _example("ok-2", passed=True),
        _example("down", passed=False, error="cannot reach http://127.0.0.1:1/agent/process"),
    ]
    report = results.RunReport(
        run_id="eval-abc",
        dataset="support",
        target="http://127.0.0.1:8080",
        started_at="2026-01-01T00:00:00+00:00",
        elapsed_s=1.5,
        threshold=0.8,
        examples=examples,
        summary=results.summarize(examples),
    )
    baseline = results.RunReport(
        run_id="eval-old",
        dataset="support",
        examples=[_example("bad", passed=True), _example("ok-2", passed=False)],
        summary=results.summarize([]),
    )
    return report.model_copy(update={"comparison": results.compare(report, baseline)})


def test_junit_xml_has_a_testcase_per_example_and_the_reasons_as_failure_messages() -> None:
    root = ET.fromstring(reports.junit(_report()))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "support"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["ok-1", "bad", "ok-2", "down"]
    assert all(c.get("classname") == "support" for c in cases)
    failures = [c for c in cases if c.find("failure") is not None]
    errored = [c for c in cases if c.find("error") is not None]
    assert [c.get("name") for c in failures] == ["bad"]
    assert [c.get("name") for c in errored] == ["down"]
    failure = failures[0].find("failure")
    assert failure is not None
    assert failure.get("message") == "tool_used: weather_api was not called <&> "
    error = errored[0].find("error")
    assert error is not None
    assert "cannot reach" in (error.get("message") or "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["score"] == "0.6250"
    assert props["threshold"] == "0.8000"
    out = cases[0].find("system-out")
    assert out is not None
    assert out.text == "> weather in Tokyo?\n< It's sunny []"


def test_markdown_summarises_score_tags_failures_and_changes() -> None:
    text = reports.markdown(_report())
    assert text.startswith("## Evaluation: support\n")
    assert "**Score 0.625** (threshold 0.80) ❌ below threshold" in text
    assert "| weather | 4 | 2 | 0.625 |" in text
    assert "| bad | 0.50 | tool_used: weather_api was not called <&> \x01 |" in text
    assert "- Regressed: bad" in text
    assert "- Improved: ok-2" in text


def test_the_table_shows_each_example_and_the_verdict() -> None:
    lines = reports.table(_report()).splitlines()
    assert lines[0].split() == ["RESULT", "SCORE", "EXAMPLE", "REASON"]
    assert lines[1].split()[:3] == ["PASS", "1.00", "ok-1"]
    assert lines[2].startswith("FAIL")
    assert "weather_api was not called" in lines[2]
    assert lines[4].startswith("ERROR")
    assert "regressed: bad" in "\n".join(lines)
    assert lines[-1] == (
        "support: score 0.625, 2/4 passed, 1 failed, 1 errors, 1.5s - FAILED (threshold 0.80)"
    )


def test_the_json_report_is_the_run_report() -> None:
    data = json.loads(reports.render(_report(), "json"))
    assert data["format"] == results.REPORT_FORMAT
    assert data["summary"]["score"] == 0.625
    assert data["comparison"]["regressed"] == ["bad"]


def test_progress_on_a_terminal_redraws_one_line() -> None:
    out = io.StringIO()
    bar = progress.Progress(3, stream=out, tty=True)
    for passed in (True, False, True):
        bar(_example("x", passed=passed))
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 3
    assert text.endswith("3/3 examples, 2 passed, 1 failed\x1b[K\n")
    assert "[" + "#" * 30 + "]" in text


def test_progress_elsewhere_prints_a_line_per_tenth_and_nothing_for_short_runs() -> None:
    out = io.StringIO()
    plain = progress.Progress(20, stream=out, tty=False)
    for _ in range(20):
        plain(_example("x", passed=True))
    plain.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "eval: 2/20 examples, 2 passed, 0 failed"
    assert lines[-1] == "eval: 20/20 examples, 20 passed, 0 failed"
    assert "\r" not in out.getvalue()
    short = io.StringIO()
    few = progress.Progress(3, stream=short, tty=False)
    few(_example("x", passed=True))
    few.close()
    assert short.getvalue() == ""
