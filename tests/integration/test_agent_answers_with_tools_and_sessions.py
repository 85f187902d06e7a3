"""The agent loop end to end against the mock LLM over HTTP, a real tool server and real Redis:
plain answers, a tool call whose result feeds the answer, and a three-turn session whose last
turn calls a tool that updates the session context stored in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, standard_tools

from pilothouse.runtime import agent, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
async def support_agent(
    llm: MockLLMProcess, tool_server: ToolServer, redis_client: aioredis.Redis, unique_name: str
) -> AsyncIterator[agent.Agent]:
    cfg = agent_config(unique_name, llm.url, tools=standard_tools(tool_server.url))
    async with agent.build_agent(cfg, redis=redis_client) as a:
        yield a


async def test_what_is_two_plus_two(support_agent: agent.Agent) -> None:
    outcome = await support_agent.handle(requests.AgentRequest(input="What is 2+2?"))
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert "4" in result.answer
    assert result.model == "mock-llm"
    assert not result.fallback_used
    assert result.steps == 1
    assert result.input_tokens > 0
    assert result.output_tokens > 0
    assert result.cost_usd > 0
    assert [d.action for d in outcome.decisions] == ["request", "llm_call", "answer"]
    assert [d.step for d in outcome.decisions] == [0, 1, 2]
    assert all(d.request_id == result.request_id for d in outcome.decisions)
    assert outcome.decisions[1].cost_usd == pytest.approx(result.cost_usd)


async def test_the_weather_comes_from_the_weather_tool(
    support_agent: agent.Agent, tool_server: ToolServer
) -> None:
    outcome = await support_agent.handle(
        requests.AgentRequest(input="What's the weather in Tokyo?")
    )
    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert [(a.tool, a.params, a.ok) for a in result.actions] == [
        ("weather_api", {"city": "Tokyo"}, True)
    ]
    assert result.actions[0].result == {"city": "Tokyo", "forecast": "sunny", "temperature_c": 21}
    assert "sunny" in result.answer
    assert result.steps == 2
    # What the tool server actually received.
    assert len(tool_server.received) == 1
    got = tool_server.received[0]
    assert (got.method, got.path, got.query) == ("GET", "/weather", {"city": "Tokyo"})
    assert got.headers["x-tool-client"] == "pilothouse"
    actions = [d.action for d in outcome.decisions]
    assert actions == ["request", "llm_call", "tool_call", "llm_call", "answer"]
    assert outcome.decisions[2].action_params["tool"] == "weather_api"


async def test_a_three_turn_return_ends_with_the_return_initiated_in_redis(
    support_agent: agent.Agent,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> None:
    session = f"s-{unique_name}"
    answers = []
    for text in ("I want to return my order", "The order number is 12345", "Yes, that's correct"):
        outcome = await support_agent.handle(requests.AgentRequest(input=text, session_id=session))
        assert outcome.result.status is requests.ResultStatus.COMPLETED, outcome.decisions
        answers.append(outcome.result)
    assert "order number" in answers[0].answer.lower()
    assert "12345" in answers[1].answer
    last = answers[2]
    assert [(a.tool, a.params) for a in last.actions] == [
        ("initiate_return", {"order_id": "12345"})
    ]
    assert last.context == {"return_initiated": True}
    assert [(r.method, r.path, r.body) for r in tool_server.received] == [
        ("POST", "/returns", {"order_id": "12345"})
    ]
    # The session store in Redis, read directly.
    messages_key, context_key = support_agent.sessions.keys(session)  # type: ignore[union-attr]
    assert orjson.loads(await redis_client.get(context_key)) == {"return_initiated": True}
    stored = [orjson.loads(m) for m in await redis_client.lrange(messages_key, 0, -1)]
    users = [m["content"] for m in stored if m["role"] == "user"]
    assert users == [
        "I want to return my order",
        "The order number is 12345",
        "Yes, that's correct",
    ]
    assert stored[-1] == {"role": "assistant", "content": last.answer}
    assert 0 < await redis_client.ttl(context_key) <= support_agent.cfg.sessions.ttl_seconds


async def test_a_new_session_knows_nothing_of_another(support_agent: agent.Agent) -> None:
    outcome = await support_agent.handle(
        requests.AgentRequest(input="Yes, that's correct", session_id="other-session")
    )
    assert outcome.result.actions == ()
    assert outcome.result.context == {}


async def test_secret_headers_come_from_the_environment_and_tools_can_set_context(
    llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PILOTHOUSE_TEST_WEATHER_TOKEN", "Bearer weather-secret")
    tools = standard_tools(
        tool_server.url,
        weather_api={
            "url": f"{tool_server.url}/with-context",
            "headers_from_env": {"authorization": "PILOTHOUSE_TEST_WEATHER_TOKEN"},
        },
    )
    cfg = agent_config(unique_name, llm.url, tools=tools)
    session = f"s-{unique_name}"
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(
            requests.AgentRequest(input="What's the weather in Oslo?", session_id=session)
        )
        _, context_key = a.sessions.keys(session)  # type: ignore[union-attr]
    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert tool_server.received[0].headers["authorization"] == "Bearer weather-secret"
    assert tool_server.received[0].query == {"city": "Oslo"}
    assert outcome.result.context == {"loyalty_tier": "gold"}
    assert orjson.loads(await redis_client.get(context_key)) == {"loyalty_tier": "gold"}
