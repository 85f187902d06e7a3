"""Tools that misbehave and a model that asks for the wrong thing: a tool answering garbage,
timing out, failing or answering binary; an unknown tool; arguments that break the schema. The
error goes back to the model as the tool's result and the loop carries on, or stops cleanly at
maxSteps with the reason. Never an exception to the caller."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, standard_tools
from prometheus_client import REGISTRY

from pilothouse.runtime import agent, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

MAX_STEPS = 3
SCENARIO = {
    "name": "misbehaving-model",
    "rules": [
        {
            "name": "keep-calling-a-missing-tool",
            "match": "keep trying",
            "after_tool": "*",
            "require_offered": False,
            "tool_calls": [{"name": "send_email", "arguments": {"to": "a@example.com"}}],
        },
        {
            "name": "start-calling-a-missing-tool",
            "match": "keep trying",
            "require_offered": False,
            "tool_calls": [{"name": "send_email", "arguments": {"to": "a@example.com"}}],
        },
        {
            "name": "missing-tool",
            "match": "send an email",
            "require_offered": False,
            "tool_calls": [{"name": "send_email", "arguments": {"to": "a@example.com"}}],
        },
        {
            "name": "wrong-arguments",
            "match": "weather somewhere",
            "tool_calls": [{"name": "weather_api", "arguments": {"town": "Tokyo"}}],
        },
        {
            "name": "weather",
            "match": r"weather in (?P<city>\w+)",
            "tool_calls": [{"name": "weather_api", "arguments": {"city": "{city}"}}],
        },
        {"name": "after-any-tool", "after_tool": "*", "content": "Tool said: {tool_result}"},
        {"name": "echo", "content": "Echo: {message}"},
    ],
}


@pytest.fixture
def llm(llm: MockLLMProcess) -> MockLLMProcess:
    """The shared mock LLM, answering as the misbehaving model."""
    llm.admin.load_scenario(SCENARIO)
    return llm


async def run(
    llm: MockLLMProcess,
    redis_client: aioredis.Redis,
    name: str,
    text: str,
    tool_url: str,
    weather_path: str = "/weather",
    weather_timeout: float = 2.0,
) -> agent.AgentOutcome:
    tools = standard_tools(
        tool_url,
        weather_api={"url": tool_url + weather_path, "timeout_seconds": weather_timeout},
    )
    cfg = agent_config(name, llm.url, tools=tools, max_steps=MAX_STEPS)
    async with agent.build_agent(cfg, redis=redis_client) as a:
        return await a.handle(requests.AgentRequest(input=text))


def tool_calls(tool: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("pilothouse_tool_calls_total", {"tool": tool, "outcome": outcome})
        or 0.0
    )


@pytest.mark.parametrize(
    ("path", "limit", "problem"),
    [
        ("/garbage", 2.0, "weather_api answered malformed JSON"),
        ("/slow", 0.3, "weather_api did not answer within 0.3s"),
        ("/error", 2.0, "weather_api answered HTTP 500: internal tool failure"),
        ("/binary", 2.0, "weather_api answered a body that is not text"),
    ],
)
async def test_a_failing_tool_is_reported_to_the_model_and_the_loop_goes_on(
    llm: MockLLMProcess,
    redis_client: aioredis.Redis,
    tool_server: ToolServer,
    unique_name: str,
    path: str,
    limit: float,
    problem: str,
) -> None:
    failed_before = tool_calls("weather_api", "failed")
    outcome = await run(
        llm,
        redis_client,
        unique_name,
        "What is the weather in Tokyo?",
        tool_server.url,
        weather_path=path,
        weather_timeout=limit,
    )
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert len(result.actions) == 1
    action = result.actions[0]
    assert (action.tool, action.params, action.ok) == ("weather_api", {"city": "Tokyo"}, False)
    assert problem in (action.error or "")
    # The model was told: its answer quotes the error it got as the tool result.
    assert result.answer.startswith("Tool said: ")
    assert orjson.loads(result.answer.removeprefix("Tool said: "))["error"].startswith(problem)
    tool_decision = next(d for d in outcome.decisions if d.action == "tool_call")
    assert tool_decision.outcome == "error"
    assert problem in (tool_decision.error or "")
    assert [r.path for r in tool_server.received] == [path]
    assert tool_calls("weather_api", "failed") == failed_before + 1


async def test_an_unknown_tool_is_reported_to_the_model(
    llm: MockLLMProcess, redis_client: aioredis.Redis, tool_server: ToolServer, unique_name: str
) -> None:
    before = tool_calls("_unknown", "unknown_tool")
    outcome = await run(llm, redis_client, unique_name, "Please send an email", tool_server.url)
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert result.actions[0].tool == "send_email"
    assert not result.actions[0].ok
    expected = "there is no tool named 'send_email'; available tools: initiate_return, weather_api"
    assert result.actions[0].error == expected
    assert expected in result.answer
    assert tool_server.received == []
    assert tool_calls("_unknown", "unknown_tool") == before + 1


async def test_arguments_breaking_the_schema_are_not_sent(
    llm: MockLLMProcess, redis_client: aioredis.Redis, tool_server: ToolServer, unique_name: str
) -> None:
    outcome = await run(
        llm, redis_client, unique_name, "How is the weather somewhere?", tool_server.url
    )
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    error = result.actions[0].error or ""
    assert "arguments of weather_api do not match its schema" in error
    assert "'city' is a required property" in error
    assert "'town' was unexpected" in error
    assert orjson.loads(result.actions[0].params["raw_arguments"]) == {"town": "Tokyo"}
    assert tool_server.received == []
    assert "do not match its schema" in result.answer


async def test_a_model_that_never_stops_calling_tools_stops_at_max_steps(
    llm: MockLLMProcess, redis_client: aioredis.Redis, tool_server: ToolServer, unique_name: str
) -> None:
    outcome = await run(llm, redis_client, unique_name, "keep trying to send", tool_server.url)
    result = outcome.result
    assert result.status is requests.ResultStatus.FAILED
    assert result.fallback_reason == "max_steps"
    assert result.steps == MAX_STEPS
    assert result.answer == agent_config(unique_name, llm.url).incomplete_response
    assert len(result.actions) == MAX_STEPS
    last = outcome.decisions[-1]
    assert (last.action, last.outcome) == ("stopped", "error")
    assert last.error == f"max_steps: maxSteps={MAX_STEPS} reached"
