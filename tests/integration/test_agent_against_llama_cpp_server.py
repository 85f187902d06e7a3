"""The agent loop against llama.cpp's own ``llama-server`` (a real OpenAI-compatible server
Pilothouse did not write) with a tiny model that ships as a package: plain answers with usage
and cost, a tool conversation across turns of a session in real Redis (with a real tool
server), and the start-up model check.

The model (SmolLM2-135M) is far too small to be right about anything: the tests check the
protocol (what was sent, accepted, called, stored), never the wisdom of the words.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, standard_tools
from llamacpp_support import MODEL_NAME, LlamaServerProcess, missing, started

from pilothouse.runtime import agent, breaker, config, llm, modelchecks, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServerProcess]:
    problem = missing()
    if problem is not None:
        pytest.fail(problem)
    server = started()
    try:
        yield server
    finally:
        server.stop()


def _model(server: LlamaServerProcess) -> config.ModelConfig:
    return config.ModelConfig(
        endpoint=server.url,
        name=MODEL_NAME,
        timeout_seconds=60,
        max_output_tokens=48,
        pricing=config.ModelPricing(input_per_million_tokens=1.0, output_per_million_tokens=2.0),
    )


def _config(server: LlamaServerProcess, name: str, **extra: object) -> config.RuntimeConfig:
    base = agent_config(name, server.url, request_timeout=120, model_timeout=60, **extra)
    return base.model_copy(update={"model": _model(server)})


async def test_a_plain_answer_with_usage_and_cost(
    llama: LlamaServerProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    async with agent.build_agent(_config(llama, unique_name), redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="Say hello."))

    result = outcome.result
    assert result.status is requests.ResultStatus.COMPLETED
    assert result.answer.strip()
    assert result.input_tokens > 0
    assert result.output_tokens > 0
    assert result.cost_usd == pytest.approx(
        (result.input_tokens * 1.0 + result.output_tokens * 2.0) / 1_000_000
    )


async def test_a_tool_conversation_across_two_turns_of_a_session(
    llama: LlamaServerProcess,
    llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> None:
    """Turn 1: a model (the strict mock, whose scenario calls tools reliably) calls the weather
    tool against the real tool server and answers from its result; the turn is stored in
    Redis. Turns 2 and 3 of the same session go to llama.cpp, which must read that history:
    an assistant turn with a tool call, the tool's result, then the answer. SmolLM2-135M cannot
    be made to call a tool itself (llama.cpp lets a model write text before a forced call, and
    this one never stops writing), so the tool step is the mock's; the server's reading of the
    tool exchange is llama.cpp's."""
    tools = standard_tools(tool_server.url)[:1]
    mock_cfg = agent_config(unique_name, llm.url, tools=tools)
    llama_cfg = _config(llama, unique_name, tools=tools, tool_choice="required", max_steps=1)
    async with agent.build_agent(mock_cfg, redis=redis_client) as first_agent:
        first = await first_agent.handle(
            requests.AgentRequest(input="What's the weather in Tokyo?", session_id="s")
        )
    async with agent.build_agent(llama_cfg, redis=redis_client) as a:
        plain = await a.handle(requests.AgentRequest(input="And what about Paris?"))
        second = await a.handle(
            requests.AgentRequest(input="And what about Paris?", session_id="s")
        )
        third = await a.handle(requests.AgentRequest(input="Thanks!", session_id="s"))
        state = await a.chain.breakers.state(a.cfg.model.key)
        assert a.sessions is not None
        key, _ = a.sessions.keys("s")
        stored = [orjson.loads(m) for m in await redis_client.lrange(key, 0, -1)]

    assert [x.tool for x in first.result.actions] == ["weather_api"]
    assert [r.path for r in tool_server.received] == ["/weather"]
    for outcome in (second, third):
        calls = [d for d in outcome.decisions if d.action == "llm_call"]
        # Accepted by llama.cpp: the tool definitions with tool_choice "required", and the
        # history with the tool exchange; no error, no retry.
        assert [(d.outcome, d.model) for d in calls] == [("ok", MODEL_NAME)], calls
    # The history (with the tool exchange) went to the server: the prompt grew by it.
    assert second.result.input_tokens > plain.result.input_tokens
    assert third.result.input_tokens > second.result.input_tokens
    assert state.state is breaker.State.CLOSED
    roles = [m["role"] for m in stored]
    assert roles[:5] == ["user", "assistant", "tool", "assistant", "user"]
    assert stored[1]["tool_calls"][0]["function"]["name"] == "weather_api"
    assert all(isinstance(m["content"], str) for m in stored)
    assert len(stored) == 4 + 2 * 2  # turn 1 with its tool exchange, then two plain turns


async def test_the_model_check_finds_the_served_model(
    llama: LlamaServerProcess, unique_name: str
) -> None:
    client = llm.LLMClient()
    try:
        checks = await modelchecks.check_models(
            client,
            unique_name,
            [_model(llama), _model(llama).model_copy(update={"name": "gpt-4o"})],
        )
    finally:
        await client.aclose()

    assert [c.verdict for c in checks] == ["offered", "not_offered"]
