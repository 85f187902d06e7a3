"""Each built-in expectation kind scores a result in [0, 1] and says why it fell short;
custom scorers join through the registry."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.runtime import errors, requests
from pilothouse.runtime.evaluation import datasets, runner, scorers


def _result(
    answer: str = "",
    *,
    actions: tuple[requests.ActionTaken, ...] = (),
    refused: bool = False,
    status: requests.ResultStatus = requests.ResultStatus.COMPLETED,
    context: dict[str, Any] | None = None,
    cost: float = 0.0,
    latency: float = 0.0,
) -> requests.AgentResult:
    return requests.AgentResult(
        request_id="r-1",
        agent_id="a",
        status=requests.ResultStatus.REFUSED if refused else status,
        answer=answer,
        refused=refused,
        refusal_reason="the input looks like prompt injection" if refused else None,
        policy="safety" if refused else None,
        actions=actions,
        context=context or {},
        cost_usd=cost,
        latency_ms=latency,
    )


def _observed(*results: requests.AgentResult) -> scorers.Observed:
    return scorers.Observed(inputs=tuple(f"turn {i}" for i in range(len(results))), results=results)


async def _score(kind: str, raw: object, observed: scorers.Observed) -> scorers.Score:
    scorer = scorers.REGISTRY.get(kind)
    assert scorer is not None
    return await scorer.evaluate(scorer.check(raw), observed, scorers.ScoringContext("ex"))


WEATHER = requests.ActionTaken(
    tool="weather_api", params={"city": "Tokyo", "days": 1}, result={"conditions": "sunny"}
)
FAILED_RETURN = requests.ActionTaken(
    tool="initiate_return", params={"order_id": "12345"}, ok=False, error="HTTP 503"
)


async def test_contains_gives_partial_credit_and_names_what_is_missing() -> None:
    observed = _observed(_result("It is sunny in Tokyo"))
    assert (await _score("contains", "Tokyo", observed)).passed
    half = await _score("contains", ["Tokyo", "22°C"], observed)
    assert (half.value, half.passed) == (0.5, False)
    assert half.reason is not None
    assert "lacks ['22°C']" in half.reason
    assert "'It is sunny in Tokyo'" in half.reason
    assert not (await _score("contains", "tokyo", observed)).passed
    assert (await _score("contains", {"value": "tokyo", "ignore_case": True}, observed)).passed
    anyof = {"value": ["rain", "SUNNY"], "ignore_case": True, "mode": "any"}
    assert (await _score("contains", anyof, observed)).passed
    none = await _score("contains", {"value": ["rain", "snow"], "mode": "any"}, observed)
    assert none.value == 0.0
    assert "none of ['rain', 'snow']" in (none.reason or "")


async def test_not_contains_fails_when_a_card_number_is_echoed() -> None:
    echoed = _observed(_result("Your card 4111 1111 1111 1111 is fine"))
    score = await _score("not_contains", ["4111 1111 1111 1111", "5500"], echoed)
    assert (score.value, score.passed) == (0.5, False)
    assert "contains ['4111 1111 1111 1111'], which it must not" in (score.reason or "")
    assert (await _score("not_contains", "4111", _observed(_result("I can't see it")))).passed


async def test_exact_and_regex() -> None:
    observed = _observed(_result("  4 \n"))
    assert (await _score("exact", "4", observed)).passed
    assert not (await _score("exact", "four", observed)).passed
    assert (
        await _score("exact", {"value": "OK", "ignore_case": True}, _observed(_result("ok")))
    ).passed
    assert (await _score("regex", r"^\s*\d\s*$", observed)).passed
    miss = await _score("regex", r"\b42\b", observed)
    assert "does not match /\\b42\\b/" in (miss.reason or "")
    assert (await _score("regex", {"pattern": "FOUR|4", "ignore_case": True}, observed)).passed


@pytest.mark.parametrize(
    ("spec", "passed"),
    [
        ("weather_api", True),
        ({"name": "weather_api", "params": {"city": "Tokyo"}}, True),
        ({"name": "weather_api", "params": {"city": "tokyo"}}, False),
        (
            {"name": "weather_api", "params": {"city": {"contains": "tok", "ignore_case": True}}},
            True,
        ),
        ({"name": "weather_api", "params": {"city": {"regex": "^To"}}}, True),
        ({"name": "weather_api", "params": {"city": {"regex": "^to$"}}}, False),
        ({"name": "weather_api", "params": {"days": 1}}, True),
        ({"name": "weather_api", "params": {"days": True}}, False),
        ({"name": "weather_api", "params": {"units": "c"}}, False),
        ({"name": "weather_api", "ok": True}, True),
        ({"name": "initiate_return", "params": {"order_id": "12345"}}, True),
        ({"name": "initiate_return", "ok": True}, False),
        ({"name": "initiate_return", "ok": False}, True),
        ("send_email", False),
    ],
)
async def test_tool_used_matches_name_parameters_and_success(spec: object, passed: bool) -> None:
    observed = _observed(_result("", actions=(WEATHER,)), _result("", actions=(FAILED_RETURN,)))
    assert (await _score("tool_used", spec, observed)).passed is passed


async def test_tool_used_says_which_call_was_missing_or_different() -> None:
    observed = _observed(_result("", actions=(WEATHER,)))
    score = await _score(
        "tool_used",
        [{"name": "weather_api", "params": {"city": "Paris"}}, "initiate_return", "weather_api"],
        observed,
    )
    assert score.value == pytest.approx(1 / 3)
    assert score.reason is not None
    assert "weather_api was called, but not as expected" in score.reason
    assert "city='Tokyo' is not = 'Paris'" in score.reason
    assert "initiate_return was not called (tools called: weather_api)" in score.reason
    nothing = await _score("tool_used", "weather_api", _observed(_result("I don't know")))
    assert "tools called: none" in (nothing.reason or "")


async def test_tool_not_used_with_names_or_star() -> None:
    observed = _observed(_result("", actions=(WEATHER,)))
    assert (await _score("tool_not_used", "initiate_return", observed)).passed
    score = await _score("tool_not_used", "*", observed)
    assert not score.passed
    assert "called weather_api, which it must not" in (score.reason or "")
    assert (await _score("tool_not_used", "*", _observed(_result("hi")))).passed


async def test_refused_status_and_context_look_at_the_final_turn() -> None:
    refused = _observed(_result("I can't help with that", refused=True))
    assert (await _score("refused", True, refused)).passed
    assert (await _score("status", ["refused", "escalated"], refused)).passed
    wrong = await _score("refused", False, refused)
    assert "refused by safety: the input looks like prompt injection" in (wrong.reason or "")
    answered = await _score("refused", True, _observed(_result("Sure! Deleting now.")))
    assert "not refused (status completed)" in (answered.reason or "")
    status = await _score("status", "completed", refused)
    assert "status is refused, expected completed" in (status.reason or "")

    flow = _observed(
        _result("Which order?", context={}),
        _result("Done", context={"return_initiated": True, "order": {"id": "1", "n": 2}}),
    )
    assert (await _score("context", {"return_initiated": True}, flow)).passed
    assert (await _score("context", {"order": {"id": "1"}}, flow)).passed
    missing = await _score("context", {"refund_issued": True}, flow)
    assert "context.refund_issued is missing" in (missing.reason or "")
    wrong_type = await _score("context", {"return_initiated": 1}, flow)
    assert "context.return_initiated is True, expected 1" in (wrong_type.reason or "")


async def test_cost_is_summed_over_turns_and_latency_is_the_slowest_turn() -> None:
    flow = _observed(_result("a", cost=0.004, latency=120), _result("b", cost=0.004, latency=80))
    assert (await _score("max_cost_usd", 0.01, flow)).passed
    over = await _score("max_cost_usd", 0.005, flow)
    assert "cost $0.008000 is above $0.005000" in (over.reason or "")
    assert (await _score("max_latency_ms", 120, flow)).passed
    slow = await _score("max_latency_ms", 100, flow)
    assert "latency 120 ms is above 100 ms" in (slow.reason or "")


async def test_judge_without_a_configured_model_fails_with_the_reason() -> None:
    score = await _score("judge", "Is the answer polite?", _observed(_result("Hi")))
    assert not score.passed
    assert "no judge model is configured" in (score.reason or "")


@pytest.fixture
def registry() -> scorers.Registry:
    """A copy of the default registry, so custom kinds do not leak into other tests."""
    return scorers.REGISTRY.copy()


async def test_a_custom_scorer_registers_and_scores_dataset_examples(
    registry: scorers.Registry,
) -> None:
    @registry.register("word_count_at_most", check=int, description="short answers")
    def _short(limit: int, observed: scorers.Observed, ctx: scorers.ScoringContext) -> float:
        words = len(observed.answer.split())
        return 1.0 if words <= limit else limit / words

    (example,) = datasets.parse_jsonl(
        '{"id": "s", "input": "hi", "expect": {"word_count_at_most": "2", "contains": "a"}}',
        registry=registry,
    )
    scored = await runner.score(example, _observed(_result("a b c d")), registry=registry)
    assert [(e.kind, e.score, e.passed) for e in scored] == [
        ("word_count_at_most", 0.5, False),
        ("contains", 1.0, True),
    ]
    assert scored[0].reason == "word_count_at_most scored 0.50"
    assert "word_count_at_most" not in scorers.REGISTRY


def test_registering_a_kind_twice_needs_replace(registry: scorers.Registry) -> None:
    def yes(spec: object, observed: scorers.Observed, ctx: scorers.ScoringContext) -> bool:
        return True

    with pytest.raises(errors.UsageError, match="'contains' is already registered"):
        registry.register("contains")(yes)
    registry.register("contains", replace=True)(yes)
    scorer = registry.get("contains")
    assert scorer is not None
    assert scorer.score is yes
    with pytest.raises(errors.UsageError, match="must be an identifier"):
        registry.register("not a name")


def test_the_module_level_decorator_registers_in_the_default_registry() -> None:
    @scorers.register("always_passes_for_test")
    def _always(spec: object, observed: scorers.Observed, ctx: scorers.ScoringContext) -> bool:
        return True

    try:
        assert "always_passes_for_test" in scorers.REGISTRY.kinds()
    finally:
        scorers.REGISTRY.unregister("always_passes_for_test")
    assert "always_passes_for_test" not in scorers.REGISTRY


def test_a_custom_check_error_is_reported_with_the_line(registry: scorers.Registry) -> None:
    def positive(raw: object) -> int:
        if not isinstance(raw, int) or raw <= 0:
            raise ValueError(f"must be a positive integer, not {raw!r}")
        return raw

    registry.register("max_words", check=positive)(lambda spec, observed, ctx: True)
    with pytest.raises(
        errors.UsageError, match=r"d\.jsonl:1: example 's': expect\.max_words: must"
    ):
        datasets.parse_jsonl(
            '{"id": "s", "input": "hi", "expect": {"max_words": -1}}',
            source="d.jsonl",
            registry=registry,
        )


@pytest.mark.parametrize(
    ("returned", "value", "passed", "reason"),
    [
        (True, 1.0, True, None),
        (False, 0.0, False, "odd not met"),
        (0.25, 0.25, False, "odd scored 0.25"),
        (scorers.Score(0.9, True), 0.9, True, None),
        (1.5, 0.0, False, "scorer 'odd' returned 1.5"),
        (scorers.Score(2.0, True), 0.0, False, "outside [0, 1]"),
        ("yes", 0.0, False, "expected a Score, float or bool"),
    ],
)
async def test_what_a_scorer_returns_becomes_a_score(
    registry: scorers.Registry, returned: object, value: float, passed: bool, reason: str | None
) -> None:
    registry.register("odd")(lambda spec, observed, ctx: returned)
    scorer = registry.get("odd")
    assert scorer is not None
    score = await scorer.evaluate(None, _observed(_result("x")), scorers.ScoringContext("e"))
    assert (score.value, score.passed) == (value, passed)
    if reason is None:
        assert score.reason is None
    else:
        assert reason in (score.reason or "")


async def test_a_scorer_that_raises_fails_its_expectation_not_the_run(
    registry: scorers.Registry,
) -> None:
    async def broken(spec: object, observed: scorers.Observed, ctx: scorers.ScoringContext) -> bool:
        raise KeyError("missing")

    registry.register("broken")(broken)
    scorer = registry.get("broken")
    assert scorer is not None
    score = await scorer.evaluate(None, _observed(_result("x")), scorers.ScoringContext("e"))
    assert not score.passed
    assert score.reason == "scorer 'broken' raised KeyError: 'missing'"
