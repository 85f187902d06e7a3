"""The HTTP target against a real runtime (``pilothouse serve``: API, queue, workers, agent,
policies) with the mock LLM and the tool server: the shipped dataset passes through
``POST /agent/process``, conversations keep their session, and ``pilothouse eval --url`` gates."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.runtime import devservers, requests
from pilothouse.runtime.evaluation import datasets, runner, targets

pytest_plugins = ["eval_support"]
pytestmark = pytest.mark.integration

TOKEN = "eval-test-token"
"""What ``eval_support``'s runtimes accept."""


async def test_the_shipped_dataset_passes_through_the_http_api(runtime_url: str) -> None:
    target = targets.HttpTarget(runtime_url, token=TOKEN)
    try:
        report = await runner.run(
            datasets.load_dataset("customer_support_v1"), target, concurrency=4, threshold=0.8
        )
    finally:
        await target.aclose()
    assert report.failures == [], report.explain()
    assert report.target == runtime_url
    flow = next(e for e in report.examples if e.id == "return-flow")
    assert flow.turns[-1].actions == [
        {"tool": "initiate_return", "params": {"order_id": "12345"}, "ok": True}
    ]


async def test_http_failures_fail_the_example_with_the_reason(runtime_url: str) -> None:
    request = requests.AgentRequest(input="What is 2+2?")
    unauthenticated = targets.HttpTarget(runtime_url)
    with pytest.raises(targets.TargetError, match="answered HTTP 401"):
        await unauthenticated.send(request)
    await unauthenticated.aclose()
    nobody = targets.HttpTarget(f"http://127.0.0.1:{devservers.free_port()}")
    with pytest.raises(targets.TargetError, match=r"cannot reach http://127\.0\.0\.1:"):
        await nobody.send(request)
    await nobody.aclose()


def test_pilothouse_eval_url_passes_and_fails_the_gate(
    runtime_url: str, forgetful_runtime_url: str, cli: Any
) -> None:
    good = cli(["eval", "customer_support_v1", "--url", runtime_url, "--token", TOKEN])
    assert good.returncode == 0, good.stdout + good.stderr
    assert "score 1.000, 30/30 passed" in good.stdout
    bad = cli(
        ["eval", "customer_support_v1", "--url", forgetful_runtime_url],
        env={"PILOTHOUSE_EVAL_TOKEN": TOKEN},
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL" in bad.stdout
    assert "weather-tokyo" in bad.stdout
    assert "FAILED (threshold 0.80)" in bad.stdout
