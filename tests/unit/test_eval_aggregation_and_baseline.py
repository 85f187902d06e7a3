"""A run's score is the weighted mean of its examples, per tag too; a baseline comparison lists
exactly the examples whose pass/fail changed; a saved JSON report reads back as a baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.runtime import errors
from pilothouse.runtime.evaluation import results


def _example(
    id: str,
    score: float,
    *,
    tags: tuple[str, ...] = (),
    weight: float = 1.0,
    error: str | None = None,
) -> results.ExampleResult:
    passed = error is None and score == 1.0
    reason = None if passed else "answer lacks ['4']"
    return results.ExampleResult(
        id=id,
        tags=list(tags),
        weight=weight,
        score=0.0 if error else score,
        passed=passed,
        error=error,
        expectations=[]
        if error
        else [
            results.ExpectationResult(kind="contains", score=score, passed=passed, reason=reason)
        ],
        turns=[results.TurnRecord(input="q", request_id=f"r-{id}", answer="a", cost_usd=0.001)],
    )


def _report(examples: list[results.ExampleResult], **kw: object) -> results.RunReport:
    return results.RunReport(
        run_id="eval-1",
        dataset="d",
        examples=examples,
        summary=results.summarize(examples),
        **kw,  # type: ignore[arg-type]
    )


def test_the_score_is_weighted_and_broken_down_per_tag() -> None:
    examples = [
        _example("a", 1.0, tags=("math",), weight=3),
        _example("b", 0.5, tags=("math", "tools")),
        _example("c", 0.0, tags=("tools",), error="cannot reach http://x"),
    ]
    s = results.summarize(examples)
    assert (s.examples, s.passed, s.failed, s.errors) == (3, 1, 1, 1)
    assert s.score == pytest.approx((3 * 1.0 + 0.5 + 0) / 5)
    assert s.pass_rate == pytest.approx(3 / 5)
    assert s.cost_usd == pytest.approx(0.003)
    assert s.by_tag["math"].score == pytest.approx((3 + 0.5) / 4)
    assert (s.by_tag["math"].examples, s.by_tag["math"].passed) == (2, 1)
    assert s.by_tag["tools"].score == pytest.approx(0.25)
    assert list(s.by_tag) == ["math", "tools"]


def test_the_gate_passes_at_or_above_the_threshold() -> None:
    examples = [_example("a", 1.0), _example("b", 1.0), _example("c", 1.0), _example("d", 0.2)]
    assert _report(examples, threshold=0.8).gate_passed
    assert not _report(examples, threshold=0.81).gate_passed
    assert _report(examples).gate_passed
    with pytest.raises(AssertionError, match=r"quality score 0\.800 < 0\.900") as caught:
        _report(examples).assert_score(0.9)
    assert "FAIL d: contains: answer lacks ['4']" in str(caught.value)
    _report(examples).assert_score(0.8)


def test_explain_lists_every_failure_and_the_regressions() -> None:
    report = _report(
        [_example("ok", 1.0), _example("bad", 0.0), _example("down", 0.0, error="HTTP 503")],
        threshold=0.5,
    )
    baseline = _report([_example("bad", 1.0)])
    report = report.model_copy(update={"comparison": results.compare(report, baseline)})
    text = report.explain()
    assert text.splitlines()[0] == "d: score 0.333 (threshold 0.50), 1/3 examples passed"
    assert "  FAIL bad: contains: answer lacks ['4']" in text
    assert "  ERROR down: error: HTTP 503" in text
    assert "  regressed since baseline: bad" in text
    assert " ok" not in text


def test_the_baseline_comparison_lists_exactly_the_examples_that_changed() -> None:
    baseline = _report(
        [
            _example("stays-passing", 1.0),
            _example("regresses", 1.0),
            _example("improves", 0.0),
            _example("stays-failing", 0.5),
            _example("errors-now", 1.0),
            _example("dropped", 1.0),
        ]
    )
    current = _report(
        [
            _example("stays-passing", 1.0),
            _example("regresses", 0.5),
            _example("improves", 1.0),
            _example("stays-failing", 0.0),
            _example("errors-now", 0.0, error="timeout"),
            _example("new", 0.0),
        ]
    )
    c = results.compare(current, baseline, source="base.json")
    assert c.regressed == ["regresses", "errors-now"]
    assert c.improved == ["improves"]
    assert c.added == ["new"]
    assert c.removed == ["dropped"]
    assert c.baseline == "base.json"
    assert c.score_delta == pytest.approx(current.score - baseline.score)
    assert not c.dataset_changed


def test_a_changed_dataset_is_noted() -> None:
    a = _report([_example("x", 1.0)], dataset_sha256="aa")
    b = _report([_example("x", 1.0)], dataset_sha256="bb")
    assert results.compare(a, b).dataset_changed
    assert not results.compare(a, a).dataset_changed


def test_a_json_report_reads_back_as_a_baseline(tmp_path: Path) -> None:
    report = _report([_example("a", 1.0, tags=("t",)), _example("b", 0.5)], threshold=0.7)
    path = tmp_path / "run.json"
    path.write_text(report.to_json())
    again = results.load_report(path)
    assert again == report
    assert results.compare(report, again).regressed == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not a JSON report"),
        ('{"examples": []}', "not a pilothouse eval JSON report"),
        (f'{{"format": "{results.REPORT_FORMAT}", "run_id": "x"}}', "invalid report at"),
    ],
)
def test_a_baseline_that_is_not_a_report_is_refused(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "base.json"
    path.write_text(content)
    with pytest.raises(errors.UsageError, match=reason):
        results.load_report(path)
    with pytest.raises(errors.UsageError, match="cannot read report"):
        results.load_report(tmp_path / "absent.json")
