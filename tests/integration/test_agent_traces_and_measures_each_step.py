"""What the loop tells operators: one span per LLM call with the GenAI semantic-convention
attributes, one per tool call and one per policy check, decisions carrying the trace id of the
request's span, and the loop's Prometheus metrics (tokens, cost, tool calls, decisions)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, standard_tools
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from pilothouse.runtime import agent, hooks, requests, telemetry
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.install_span_exporter(exporter)
    yield exporter
    exporter.shutdown()


class NamedPolicy:
    """A policy hook that allows everything but is one (unlike the no-policy default)."""

    async def check(self, action: hooks.Action) -> hooks.PolicyResult:
        return hooks.PolicyResult(hooks.Verdict.ALLOWED, policy="open-door")

    async def settle(self, action: hooks.Action, actual_cost_usd: float) -> None:
        return None


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_spans_and_trace_ids_of_a_tool_using_request(
    llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    cfg = agent_config(unique_name, llm.url, tools=standard_tools(tool_server.url))
    tracer = trace.get_tracer("test")
    async with agent.build_agent(cfg, redis=redis_client, policy_hook=NamedPolicy()) as a:
        with tracer.start_as_current_span("request") as parent:
            outcome = await a.handle(requests.AgentRequest(input="What's the weather in Tokyo?"))
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert {d.trace_id for d in outcome.decisions} == {trace_id}

    finished = [s for s in spans.get_finished_spans() if s.name != "request"]
    names = [s.name for s in finished]
    assert names.count("chat mock-llm") == 2
    assert names.count("execute_tool weather_api") == 1
    assert names.count("policy_check request") == 1
    assert names.count("policy_check llm_call") == 2
    assert names.count("policy_check tool_call") == 1
    assert all(format(s.context.trace_id, "032x") == trace_id for s in finished)

    chat = next(s for s in finished if s.name == "chat mock-llm")
    attributes = dict(chat.attributes or {})
    assert chat.kind is trace.SpanKind.CLIENT
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "mock-llm"
    assert attributes["gen_ai.response.model"] == "mock-llm"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    tool = next(s for s in finished if s.name == "execute_tool weather_api")
    assert dict(tool.attributes or {})["gen_ai.tool.name"] == "weather_api"
    check = next(s for s in finished if s.name == "policy_check tool_call")
    assert dict(check.attributes or {})["pilothouse.policy.verdict"] == "allowed"
    assert dict(check.attributes or {})["pilothouse.policy.name"] == "open-door"


async def test_without_policies_there_are_no_policy_check_spans(
    llm: MockLLMProcess,
    redis_client: aioredis.Redis,
    unique_name: str,
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    async with agent.build_agent(agent_config(unique_name, llm.url), redis=redis_client) as a:
        await a.handle(requests.AgentRequest(input="What is 2+2?"))
    assert [s.name for s in spans.get_finished_spans()] == ["chat mock-llm"]


async def test_a_failed_llm_call_span_has_an_error_type(
    llm: MockLLMProcess,
    redis_client: aioredis.Redis,
    unique_name: str,
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    llm.admin.set_faults(error_rate=1.0, error_status=502)
    try:
        cfg = agent_config(unique_name, llm.url, attempts=1)
        async with agent.build_agent(cfg, redis=redis_client) as a:
            await a.handle(requests.AgentRequest(input="What is 2+2?"))
    finally:
        llm.admin.clear_faults()
    chat = next(s for s in spans.get_finished_spans() if s.name == "chat mock-llm")
    assert dict(chat.attributes or {})["error.type"] == "server_error"
    assert chat.status.status_code is trace.StatusCode.ERROR


async def test_the_loop_metrics_move_with_a_request(
    llm: MockLLMProcess, tool_server: ToolServer, redis_client: aioredis.Redis, unique_name: str
) -> None:
    before = {
        "input": sample("pilothouse_llm_tokens_total", kind="input"),
        "output": sample("pilothouse_llm_tokens_total", kind="output"),
        "cost": sample("pilothouse_llm_cost_usd_total"),
        "calls": sample("pilothouse_llm_request_duration_seconds_count"),
        "tool_ok": sample("pilothouse_tool_calls_total", tool="weather_api", outcome="ok"),
    }
    cfg = agent_config(unique_name, llm.url, tools=standard_tools(tool_server.url))
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What's the weather in Tokyo?"))
    result = outcome.result
    delta_in = sample("pilothouse_llm_tokens_total", kind="input") - before["input"]
    delta_out = sample("pilothouse_llm_tokens_total", kind="output") - before["output"]
    assert delta_in == result.input_tokens
    assert delta_out == result.output_tokens
    assert sample("pilothouse_llm_cost_usd_total") - before["cost"] == pytest.approx(
        result.cost_usd
    )
    assert sample("pilothouse_llm_request_duration_seconds_count") - before["calls"] == 2
    assert (
        sample("pilothouse_tool_calls_total", tool="weather_api", outcome="ok") - before["tool_ok"]
        == 1
    )
    for action in ("request", "llm_call", "tool_call", "answer"):
        expected = sum(1 for d in outcome.decisions if d.action == action)
        labels = {"agent": unique_name, "action": action, "outcome": "ok"}
        assert sample("pilothouse_decisions_total", **labels) == expected
