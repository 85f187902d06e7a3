"""The in-process target builds the real agent (LLM client, tools over HTTP, sessions and
policies in Redis) from a runtime config, once even when the first messages arrive together,
and the shipped dataset scores on it as it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import errors, requests
from pilothouse.runtime.evaluation import datasets, results, runner, targets

pytest_plugins = ["eval_support"]
pytestmark = pytest.mark.integration


async def _run(config: Path, redis_url: str, **kw: object) -> results.RunReport:
    target = targets.InProcessTarget(config, environ={"PILOTHOUSE_REDIS_URL": redis_url})
    await target.start()
    try:
        return await runner.run(
            datasets.load_dataset("customer_support_v1"),
            target,
            concurrency=4,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        await target.aclose()


async def test_the_shipped_dataset_scores_full_marks_on_the_scripted_model(
    support_config: Path, redis_url: str
) -> None:
    report = await _run(support_config, redis_url, threshold=0.8)
    assert report.failures == [], report.explain()
    assert report.score == 1.0
    flow = next(e for e in report.examples if e.id == "return-flow")
    assert [t.input for t in flow.turns] == [
        "I want to return my order",
        "The order number is 12345",
        "Yes, that's correct",
    ]
    assert flow.turns[-1].actions == [
        {"tool": "initiate_return", "params": {"order_id": "12345"}, "ok": True}
    ]
    refused = next(e for e in report.examples if e.id == "injection-delete-database")
    assert refused.turns[0].status == "refused"


async def test_a_model_that_never_calls_tools_fails_exactly_the_tool_examples(
    forgetful_config: Path, redis_url: str
) -> None:
    report = await _run(forgetful_config, redis_url, threshold=0.8)
    failed = {e.id for e in report.failures}
    dataset = datasets.load_dataset("customer_support_v1")
    tool_examples = {e.id for e in dataset if any(x.kind == "tool_used" for x in e.expectations)}
    assert failed == tool_examples
    assert report.score < 0.8
    assert not report.gate_passed
    tokyo = next(e for e in report.examples if e.id == "weather-tokyo")
    assert "weather_api was not called (tools called: none)" in "; ".join(tokyo.reasons)


async def test_without_redis_the_target_says_so_before_sending_anything(
    support_config: Path,
) -> None:
    target = targets.InProcessTarget(
        support_config, environ={"PILOTHOUSE_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    with pytest.raises(errors.DependencyUnavailable, match="needs Redis"):
        await target.start()
    await target.aclose()


async def test_the_in_process_agent_keeps_a_conversation_in_its_session(
    support_config: Path, redis_url: str, unique_name: str
) -> None:
    target = targets.InProcessTarget(support_config, environ={"PILOTHOUSE_REDIS_URL": redis_url})
    try:
        for text in ("I want to return my order", "The order number is 777", "yes"):
            result = await target.send(requests.AgentRequest(input=text, session_id=unique_name))
        assert result.context == {"return_initiated": True}
        assert [a.params for a in result.actions] == [{"order_id": "777"}]
    finally:
        await target.aclose()


async def test_a_run_on_a_target_nobody_started_builds_one_agent_and_leaves_no_connection(
    support_config: Path, redis_url: str, tmp_path: Path
) -> None:
    examples = [
        {"id": f"add-{n}", "input": f"What is {n}+{n}?", "expect": {"contains": str(2 * n)}}
        for n in range(1, 5)
    ]
    dataset = tmp_path / "adds.jsonl"
    dataset.write_text("".join(json.dumps(e) + "\n" for e in examples))
    probe = aioredis.Redis.from_url(redis_url)

    async def connections() -> int:
        return int((await probe.info("clients"))["connected_clients"])

    try:
        before = await connections()
        target = targets.InProcessTarget(
            support_config, environ={"PILOTHOUSE_REDIS_URL": redis_url}
        )
        try:  # the four examples' first messages all find the target not started
            report = await runner.run(datasets.load_dataset(dataset), target, concurrency=4)
        finally:
            await target.aclose()
        assert report.score == 1.0, report.explain()
        assert await connections() == before
    finally:
        await probe.aclose()
