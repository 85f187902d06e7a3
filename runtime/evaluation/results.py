"""What an evaluation run found: per-example results, the aggregate, the baseline comparison.

Pure data and pure functions. The runner (:mod:`runner`) fills :class:`ExampleResult`s and
calls :func:`summarize` and :func:`compare`; :mod:`reports` renders a :class:`RunReport`; the
JSON report *is* a :class:`RunReport`, so a saved run is read back with :func:`load_report`
to serve as the next run's baseline.

Scoring: an expectation scores in [0, 1]; an example scores the mean of its expectations and
passes when every expectation passed; a run scores the weighted mean of its examples' scores
(an example whose request failed scores 0). Per tag the same, over the examples with the tag.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pilothouse.runtime import errors

__all__ = [
    "REPORT_FORMAT",
    "Comparison",
    "ExampleResult",
    "ExpectationResult",
    "RunReport",
    "Summary",
    "TagSummary",
    "TurnRecord",
    "compare",
    "load_report",
    "summarize",
]

REPORT_FORMAT = "pilothouse.eval/v1"
_EXPLAIN_MAX_EXAMPLES = 25


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ExpectationResult(_Model):
    """How one expectation scored."""

    kind: str
    score: float
    passed: bool
    reason: str | None = None


class TurnRecord(_Model):
    """One message sent and what came back."""

    input: str
    request_id: str
    answer: str = ""
    status: str = ""
    refused: bool = False
    actions: list[dict[str, Any]] = Field(default_factory=list)
    """Tool calls: ``{"tool", "params", "ok"}``."""
    cost_usd: float = 0.0
    latency_ms: float = 0.0


class ExampleResult(_Model):
    """One example's outcome."""

    id: str
    line: int = 0
    tags: list[str] = Field(default_factory=list)
    weight: float = 1.0
    score: float
    passed: bool
    error: str | None = None
    """Why the example could not be run (the target failed); it then scores 0."""
    expectations: list[ExpectationResult] = Field(default_factory=list)
    turns: list[TurnRecord] = Field(default_factory=list)
    elapsed_ms: float = 0.0
    """Wall time of the example as the runner saw it."""

    @property
    def reasons(self) -> list[str]:
        """Why the example failed: the error, or each failed expectation's reason."""
        if self.error is not None:
            return [f"error: {self.error}"]
        return [f"{e.kind}: {e.reason}" for e in self.expectations if not e.passed]

    @property
    def outcome(self) -> str:
        """``pass``, ``fail`` or ``error``."""
        if self.error is not None:
            return "error"
        return "pass" if self.passed else "fail"


class TagSummary(_Model):
    """The aggregate over the examples with one tag."""

    examples: int
    passed: int
    score: float


class Summary(_Model):
    """The aggregate of a run."""

    examples: int
    passed: int
    failed: int
    """Examples that ran and missed an expectation."""
    errors: int
    """Examples whose requests failed."""
    score: float
    """Weighted mean of the example scores."""
    pass_rate: float
    """Weighted share of examples that passed."""
    by_tag: dict[str, TagSummary] = Field(default_factory=dict)
    cost_usd: float = 0.0


class Comparison(_Model):
    """This run against a baseline run: the examples whose outcome changed."""

    baseline: str
    """Where the baseline report came from."""
    baseline_score: float
    score_delta: float
    regressed: list[str] = Field(default_factory=list)
    """Passed in the baseline, not now."""
    improved: list[str] = Field(default_factory=list)
    """Did not pass in the baseline, pass now."""
    added: list[str] = Field(default_factory=list)
    """Not in the baseline."""
    removed: list[str] = Field(default_factory=list)
    """In the baseline, not in this run."""
    dataset_changed: bool = False
    """The dataset file differs from the baseline's (by digest)."""


class RunReport(_Model):
    """Everything about one run; its JSON form is the ``json`` report and a baseline."""

    format: str = REPORT_FORMAT
    run_id: str
    dataset: str
    dataset_source: str = ""
    dataset_sha256: str = ""
    target: str = ""
    started_at: str = ""
    """ISO 8601, UTC."""
    elapsed_s: float = 0.0
    threshold: float | None = None
    examples: list[ExampleResult]
    summary: Summary
    comparison: Comparison | None = None

    @property
    def score(self) -> float:
        """The run's score (see the module docstring)."""
        return self.summary.score

    @property
    def gate_passed(self) -> bool:
        """The score reaches the threshold (always true without one)."""
        return self.threshold is None or self.score >= self.threshold

    @property
    def failures(self) -> list[ExampleResult]:
        """Examples that failed or errored, in dataset order."""
        return [e for e in self.examples if not e.passed]

    def explain(self, limit: int = _EXPLAIN_MAX_EXAMPLES) -> str:
        """A readable account of the score and of every failing example (for assertions)."""
        s = self.summary
        gate = f" (threshold {self.threshold:.2f})" if self.threshold is not None else ""
        lines = [
            f"{self.dataset}: score {s.score:.3f}{gate}, {s.passed}/{s.examples} examples passed"
        ]
        for example in self.failures[:limit]:
            lines.append(f"  {example.outcome.upper()} {example.id}: {'; '.join(example.reasons)}")
        if len(self.failures) > limit:
            lines.append(f"  ... and {len(self.failures) - limit} more")
        if self.comparison is not None and self.comparison.regressed:
            lines.append(f"  regressed since baseline: {', '.join(self.comparison.regressed)}")
        return "\n".join(lines)

    def assert_score(self, threshold: float | None = None) -> None:
        """Raise ``AssertionError`` listing the failures when the score is below the threshold."""
        wanted = self.threshold if threshold is None else threshold
        if wanted is not None and self.score < wanted:
            raise AssertionError(f"quality score {self.score:.3f} < {wanted:.3f}\n{self.explain()}")

    def to_json(self) -> str:
        """The JSON report."""
        return self.model_dump_json(indent=2)


def _weighted(items: Sequence[ExampleResult], value: Any) -> float:
    total = sum(e.weight for e in items)
    return sum(e.weight * value(e) for e in items) / total if total else 0.0


def summarize(examples: Sequence[ExampleResult]) -> Summary:
    """The aggregate of example results, overall and per tag."""
    by_tag: dict[str, list[ExampleResult]] = {}
    for e in examples:
        for tag in e.tags:
            by_tag.setdefault(tag, []).append(e)
    return Summary(
        examples=len(examples),
        passed=sum(e.passed for e in examples),
        failed=sum(not e.passed and e.error is None for e in examples),
        errors=sum(e.error is not None for e in examples),
        score=_weighted(examples, lambda e: e.score),
        pass_rate=_weighted(examples, lambda e: 1.0 if e.passed else 0.0),
        by_tag={
            tag: TagSummary(
                examples=len(items),
                passed=sum(e.passed for e in items),
                score=_weighted(items, lambda e: e.score),
            )
            for tag, items in sorted(by_tag.items())
        },
        cost_usd=sum(t.cost_usd for e in examples for t in e.turns),
    )


def compare(current: RunReport, baseline: RunReport, *, source: str = "") -> Comparison:
    """Which examples changed outcome since ``baseline`` (exactly those whose pass/fail did)."""
    before = {e.id: e.passed for e in baseline.examples}
    now_ids = {e.id for e in current.examples}
    return Comparison(
        baseline=source or baseline.run_id,
        baseline_score=baseline.score,
        score_delta=current.score - baseline.score,
        regressed=[e.id for e in current.examples if before.get(e.id) is True and not e.passed],
        improved=[e.id for e in current.examples if before.get(e.id) is False and e.passed],
        added=[e.id for e in current.examples if e.id not in before],
        removed=[e.id for e in baseline.examples if e.id not in now_ids],
        dataset_changed=bool(
            baseline.dataset_sha256
            and current.dataset_sha256
            and baseline.dataset_sha256 != current.dataset_sha256
        ),
    )


def load_report(path: str | Path) -> RunReport:
    """Read a JSON report written by ``pilothouse eval --report json`` (e.g. a baseline)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise errors.UsageError(f"{p}: cannot read report: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.UsageError(f"{p}: not a JSON report: {e}") from e
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise errors.UsageError(
            f'{p}: not a pilothouse eval JSON report (expected "format": "{REPORT_FORMAT}"; '
            "write one with --report json)"
        )
    try:
        return RunReport.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise errors.UsageError(f"{p}: invalid report at {where}: {first['msg']}") from e
