"""A started runtime exposes every counter whose labels are known in advance at 0, before any
request, and its ``/metrics`` passes Prometheus's own ``promtool check metrics``.

Why 0 matters: Prometheus alerts on ``increase()`` / ``rate()``, which need two samples. A
series that first appears at 1 (created by the first dead letter, the first failure) shows no
increase, so the first dead letter of a fresh pod would never fire ``PilothouseDeadLetters``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_support import ToolServer, standard_tools
from prometheus_client.parser import text_string_to_metric_families
from serving_support import runtime_config, runtime_env, wait_for

from pilothouse.runtime import agent, llm, metrics, requests, testing, tools
from pilothouse.runtime.audit import writers
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _at(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of exactly this series, or None when it is not exposed."""
    return samples.get((name, frozenset(labels.items())))


def _config(name: str, llm_url: str, tool_url: str) -> dict[str, Any]:
    return runtime_config(
        name,
        llm_url,
        tools=[t.model_dump(by_alias=True, mode="json") for t in standard_tools(tool_url)],
        policies=[{"name": "budget", "costLimit": {"maxUsdPerHour": 100}}],
    )


def _known_series(a: str, role: str) -> list[tuple[str, dict[str, str]]]:
    """The counter series a process of ``role`` must expose from its start (agent ``a``)."""
    # In every process: unlabelled counters, and the audit writer's outcomes.
    expected: list[tuple[str, dict[str, str]]] = [
        ("pilothouse_llm_cost_usd_total", {}),
        ("pilothouse_retries_total", {}),
    ]
    expected += [
        ("pilothouse_audit_records_total", {"outcome": o}) for o in writers.RECORD_OUTCOMES
    ]
    if role in ("all", "api"):  # the API refuses with 429 when the queue is full
        expected.append(("pilothouse_queue_rejected_total", {"agent": a}))
    if role in ("all", "worker"):  # the worker pool and the agent loop
        expected += [
            ("pilothouse_dead_letters_total", {"agent": a}),
            ("pilothouse_queue_reclaimed_total", {"agent": a}),
        ]
        expected += [
            ("pilothouse_requests_total", {"agent": a, "status": s}) for s in requests.ResultStatus
        ]
        expected += [("pilothouse_llm_tokens_total", {"kind": k}) for k in llm.TOKEN_KINDS]
        expected += [("pilothouse_fallbacks_total", {"reason": r}) for r in agent.FALLBACK_REASONS]
        expected += [
            ("pilothouse_tool_calls_total", {"tool": t, "outcome": o})
            for t in ("weather_api", "initiate_return")
            for o in tools.OUTCOMES
        ]
        expected.append(
            (
                "pilothouse_tool_calls_total",
                {"tool": metrics.UNKNOWN_TOOL_LABEL, "outcome": "unknown_tool"},
            )
        )
        expected += [
            ("pilothouse_policy_decisions_total", {"policy": "budget", "result": r})
            for r in metrics.POLICY_RESULTS
        ]
    return expected


@pytest.mark.parametrize("role", ["all", "worker", "api"])
def test_every_known_counter_is_exposed_at_zero_before_any_request(
    redis_url: str,
    postgres_dsn: str,
    tmp_path: Path,
    tool_server: ToolServer,
    unique_name: str,
    role: str,
) -> None:
    with MockLLMProcess(seed=3) as mock:
        cfg = _config(unique_name, mock.url, tool_server.url)
        env = runtime_env(redis_url, postgres_dsn)
        with testing.RuntimeProcess(cfg, role=role, env=env, workdir=tmp_path / "rt") as rt:
            text = httpx.get(f"{rt.url}/metrics", timeout=10).text
    samples = _samples(text)
    expected = _known_series(unique_name, role)

    missing = [(n, lb) for n, lb in expected if _at(samples, n, **lb) is None]
    assert not missing, f"not exposed by a fresh {role} process: {missing}"
    moved = [(n, lb, _at(samples, n, **lb)) for n, lb in expected if _at(samples, n, **lb) != 0]
    assert not moved, f"not at 0 before any request: {moved}"


def test_runtime_metrics_pass_promtool_check_metrics(
    redis_url: str,
    postgres_dsn: str,
    tmp_path: Path,
    tool_server: ToolServer,
    unique_name: str,
    promtool: Any,
) -> None:
    with MockLLMProcess(seed=4) as mock:
        cfg = _config(unique_name, mock.url, tool_server.url)
        env = runtime_env(redis_url, postgres_dsn)
        with (
            testing.RuntimeProcess(cfg, env=env, workdir=tmp_path / "rt") as rt,
            httpx.Client(base_url=rt.url, timeout=30) as client,
        ):
            fresh = client.get("/metrics").text
            for i in range(3):
                r = client.post("/v1/requests?wait=10", json={"input": f"What is {i}+2?"})
                assert r.status_code == 200, r.text

            def answered() -> str | None:
                text = client.get("/metrics").text
                done = _at(
                    _samples(text),
                    "pilothouse_requests_total",
                    agent=unique_name,
                    status="completed",
                )
                return text if done == 3 else None

            busy = wait_for(answered, timeout=20, what="three answered requests in /metrics")

    for exposition in (fresh, busy):
        proc = promtool.check_metrics(exposition)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout + proc.stderr == ""
    # The check has something to say about bad input: it is not a no-op on our expositions.
    bad = promtool.check_metrics("# TYPE pilothouse_bad counter\npilothouse_bad 1\n")
    assert bad.returncode != 0
    assert "pilothouse_bad" in bad.stdout + bad.stderr
