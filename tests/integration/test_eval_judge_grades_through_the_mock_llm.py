"""The LLM judge asks a real OpenAI-compatible server (the mock LLM, with a scenario that
answers judge prompts) and turns its answer into a score; a judge that fails or answers
without a score fails that expectation with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.runtime import config, errors, requests
from pilothouse.runtime.evaluation import datasets, judges, runner, scorers
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytest_plugins = ["eval_support"]
pytestmark = pytest.mark.integration

JUDGE_SCENARIO = r"""
name: judge
models: [judge-model]
rules:
  - name: impolite
    match: '(?s)EVALUATION REQUEST.*Agent answer:.*\b(?:stupid|whatever)\b'
    content: "SCORE: 0.2\nREASON: the answer is rude to the customer"
  - name: vague
    match: '(?s)EVALUATION REQUEST.*Agent answer:.*\bmaybe\b'
    content: "I would rather not grade this one."
  - name: polite
    match: 'EVALUATION REQUEST'
    content: "Score: 9/10\nReason: polite and answers the question"
"""


@pytest.fixture(scope="module")
def judge_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLMProcess]:
    scenario = tmp_path_factory.mktemp("judge") / "judge.yaml"
    scenario.write_text(JUDGE_SCENARIO)
    with MockLLMProcess(scenario=scenario, api_key="judge-key") as llm:
        yield llm


@pytest.fixture
async def judge(judge_llm: MockLLMProcess) -> AsyncIterator[judges.Judge]:
    model = config.ModelConfig(
        endpoint=judge_llm.url, name="judge-model", api_key_env="JUDGE_KEY", timeout_seconds=5
    )
    j = judges.Judge(model, environ={"JUDGE_KEY": "judge-key"})
    yield j
    await j.aclose()


def _observed(answer: str) -> scorers.Observed:
    result = requests.AgentResult(
        request_id="r", agent_id="a", status=requests.ResultStatus.COMPLETED, answer=answer
    )
    return scorers.Observed(inputs=("Where is my parcel?",), results=(result,))


JUDGE_FLAGS = (
    *("--judge-model", "judge-model", "--judge-api-key-env", "JUDGE_KEY"),
    "--judge-endpoint",
)
DATASET = "\n".join(
    [
        '{"id": "polite", "input": "Where is my parcel?", '
        '"expect": {"judge": "Is the answer polite and helpful?"}}',
        '{"id": "strict", "input": "Where is my parcel?", '
        '"expect": {"judge": {"rubric": "Is it polite?", "pass_score": 0.95}}}',
    ]
)


async def test_the_judge_scores_answers_against_the_rubric(
    judge: judges.Judge, judge_llm: MockLLMProcess
) -> None:
    polite, strict = datasets.parse_jsonl(DATASET)
    good = _observed("It arrives tomorrow, sorry for the wait!")
    scored = await runner.score(polite, good, registry=scorers.REGISTRY, judge=judge)
    assert [(e.score, e.passed) for e in scored] == [(0.9, True)]
    scored = await runner.score(strict, good, registry=scorers.REGISTRY, judge=judge)
    assert (scored[0].score, scored[0].passed) == (0.9, False)
    assert scored[0].reason == ("judge scored 0.90 (< 0.95): polite and answers the question")
    rude = await runner.score(
        polite, _observed("whatever, check yourself"), registry=scorers.REGISTRY, judge=judge
    )
    assert (rude[0].score, rude[0].passed) == (0.2, False)
    assert "the answer is rude to the customer" in (rude[0].reason or "")
    assert judge_llm.admin.stats()["by_rule"] == {"polite": 2, "impolite": 1}


async def test_a_judge_answer_without_a_score_fails_the_expectation(judge: judges.Judge) -> None:
    polite, _ = datasets.parse_jsonl(DATASET)
    scored = await runner.score(
        polite, _observed("maybe tomorrow"), registry=scorers.REGISTRY, judge=judge
    )
    assert not scored[0].passed
    assert "judge gave no score: no score in the judge's answer" in (scored[0].reason or "")


async def test_a_failing_judge_fails_the_expectation_with_the_http_status(
    judge: judges.Judge, judge_llm: MockLLMProcess
) -> None:
    judge_llm.admin.set_faults(error_rate=1.0, error_status=503)
    try:
        verdict = await judge.grade("Is it polite?", ["hi"], "hello")
    finally:
        judge_llm.admin.clear_faults()
    assert verdict.score is None
    assert verdict.reason.startswith("judge answered HTTP 503")


async def test_a_wrong_api_key_or_no_key_is_reported(judge_llm: MockLLMProcess) -> None:
    model = config.ModelConfig(
        endpoint=judge_llm.url, name="judge-model", api_key_env="JUDGE_KEY", timeout_seconds=5
    )
    with pytest.raises(errors.UsageError, match="JUDGE_KEY"):
        judges.Judge(model, environ={})
    wrong = judges.Judge(model, environ={"JUDGE_KEY": "nope"})
    try:
        verdict = await wrong.grade("Is it polite?", ["hi"], "hello")
    finally:
        await wrong.aclose()
    assert verdict.score is None
    assert "HTTP 401" in verdict.reason


def test_pilothouse_eval_grades_with_the_configured_judge(
    judge_llm: MockLLMProcess, support_config: Path, redis_url: str, tmp_path: Path, cli: Any
) -> None:
    dataset = tmp_path / "judged.jsonl"
    dataset.write_text(DATASET + "\n")
    without = cli(["eval", str(dataset), "--config", str(support_config)])
    assert without.returncode == 2
    assert "lines 1, 2 use the 'judge' expectation but no judge model is configured" in (
        without.stderr
    )
    judged = cli(
        ["eval", str(dataset), "--config", str(support_config), *JUDGE_FLAGS, judge_llm.url],
        env={"JUDGE_KEY": "judge-key", "PILOTHOUSE_REDIS_URL": redis_url},
    )
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert "score 0.900, 1/2 passed" in judged.stdout
    assert "judge: judge scored 0.90 (< 0.95)" in judged.stdout
