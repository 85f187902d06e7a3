"""The runner's own logic, against an in-memory target (the real targets are tested against
real servers in tests/integration): bounded concurrency, conversations in one session, fresh
request ids, failures that fail one example, and the report it builds."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.runtime import errors, requests
from pilothouse.runtime.evaluation import datasets, runner, targets


class _EchoTarget:
    """Answers "echo: <input>" after yielding; counts how many requests overlap."""

    description = "in-memory echo"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.in_flight = 0
        self.max_in_flight = 0
        self.seen: list[requests.AgentRequest] = []

    async def send(self, request: requests.AgentRequest) -> requests.AgentResult:
        self.seen.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            if self.fail_on is not None and self.fail_on in request.input:
                raise targets.TargetError("HTTP 503: overloaded")
            return requests.AgentResult(
                request_id=request.request_id,
                agent_id="echo",
                status=requests.ResultStatus.COMPLETED,
                answer=f"echo: {request.input}",
                session_id=request.session_id,
                cost_usd=0.001,
            )
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def _dataset(lines: list[str]) -> datasets.Dataset:
    return datasets.Dataset("unit", "<unit>", datasets.parse_jsonl("\n".join(lines)), "ab" * 32)


SINGLE = [
    f'{{"id": "q{n}", "input": "question {n}", "expect": {{"contains": "question {n}"}}, '
    f'"tags": ["{"even" if n % 2 == 0 else "odd"}"]}}'
    for n in range(12)
]


async def test_no_more_than_concurrency_examples_are_in_flight() -> None:
    target = _EchoTarget()
    report = await runner.run(_dataset(SINGLE), target, concurrency=3)
    assert target.max_in_flight == 3
    assert len(target.seen) == 12
    assert report.score == 1.0
    assert [e.id for e in report.examples] == [f"q{n}" for n in range(12)]
    one = await runner.run(_dataset(SINGLE), _EchoTarget(), concurrency=1)
    assert one.summary.passed == 12


async def test_a_conversation_runs_in_order_in_one_session_and_is_scored_on_the_last_turn() -> None:
    target = _EchoTarget()
    dataset = _dataset(
        [
            '{"id": "flow", "conversation": ["one", "two", "three"], '
            '"expect": {"contains": "three", "not_contains": "one"}}',
            '{"id": "solo", "input": "alone", "expect": {"contains": "alone"}}',
        ]
    )
    report = await runner.run(dataset, target, concurrency=2, run_id="eval-fixed")
    flow = [r for r in target.seen if r.input in ("one", "two", "three")]
    assert [r.input for r in flow] == ["one", "two", "three"]
    assert {r.session_id for r in flow} == {"eval-fixed-0"}
    assert [r.request_id for r in flow] == ["eval-fixed-0-0", "eval-fixed-0-1", "eval-fixed-0-2"]
    (solo,) = [r for r in target.seen if r.input == "alone"]
    assert solo.session_id is None
    assert solo.metadata == {"evaluation_run": "eval-fixed", "dataset": "unit", "example": "solo"}
    assert report.examples[0].passed
    assert [t.input for t in report.examples[0].turns] == ["one", "two", "three"]


async def test_each_run_uses_fresh_request_ids() -> None:
    first, second = _EchoTarget(), _EchoTarget()
    a = await runner.run(_dataset(SINGLE[:2]), first)
    b = await runner.run(_dataset(SINGLE[:2]), second)
    assert a.run_id != b.run_id
    assert not {r.request_id for r in first.seen} & {r.request_id for r in second.seen}


async def test_a_failed_request_fails_its_example_with_the_reason_and_the_run_goes_on() -> None:
    target = _EchoTarget(fail_on="question 3")
    seen: list[str] = []
    report = await runner.run(
        _dataset(SINGLE), target, on_result=lambda r: seen.append(r.id), threshold=0.95
    )
    failed = report.examples[3]
    assert (failed.outcome, failed.score) == ("error", 0.0)
    assert failed.reasons == ["error: HTTP 503: overloaded"]
    assert report.summary.errors == 1
    assert report.score == pytest.approx(11 / 12)
    assert not report.gate_passed
    assert sorted(seen) == sorted(e.id for e in report.examples)
    assert report.summary.by_tag["odd"].passed == 5


async def test_a_failure_mid_conversation_names_the_turn() -> None:
    dataset = _dataset(
        ['{"id": "f", "conversation": ["a", "b boom", "c"], "expect": {"refused": true}}']
    )
    target = _EchoTarget(fail_on="boom")
    report = await runner.run(dataset, target)
    assert report.examples[0].error == "turn 2: HTTP 503: overloaded"
    assert [r.input for r in target.seen] == ["a", "b boom"]


async def test_the_report_carries_dataset_target_and_baseline_comparison() -> None:
    dataset = _dataset(SINGLE[:3])
    baseline = await runner.run(dataset, _EchoTarget(fail_on="question 1"))
    report = await runner.run(
        dataset, _EchoTarget(fail_on="question 2"), baseline=baseline, baseline_source="b.json"
    )
    assert (report.dataset, report.dataset_sha256, report.target) == (
        "unit",
        "ab" * 32,
        "in-memory echo",
    )
    c = report.comparison
    assert c is not None
    assert (c.baseline, c.regressed, c.improved, c.added, c.removed) == (
        "b.json",
        ["q2"],
        ["q1"],
        [],
        [],
    )
    assert c.baseline_score == pytest.approx(2 / 3)
    assert c.score_delta == pytest.approx(0.0)


async def test_a_judge_dataset_without_a_judge_or_bad_concurrency_is_refused_up_front() -> None:
    dataset = _dataset(['{"id": "j", "input": "hi", "expect": {"judge": "Is it polite?"}}'])
    target = _EchoTarget()
    with pytest.raises(errors.UsageError, match="lines 1 use the 'judge' expectation"):
        await runner.run(dataset, target)
    with pytest.raises(errors.UsageError, match="concurrency must be at least 1"):
        await runner.run(_dataset(SINGLE), target, concurrency=0)
    assert target.seen == []
