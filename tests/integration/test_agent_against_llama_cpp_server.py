"""The agent loop against llama.cpp's own ``llama-server`` (a real OpenAI-compatible server
Pilothouse did not write) with a tiny model that ships as a package: plain answers with usage,
what it answers to the message shape OpenAI accepts and it does not, and a tool conversation
(forced by ``toolChoice``) across two turns of a session in real Redis, with a real tool server.

The model (SmolLM2-135M) is far too small to be right about anything: the tests check the
protocol (what was sent, accepted, called, stored), never the wisdom of the words.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, standard_tools
from llamacpp_support import MODEL_NAME, LlamaServerProcess, missing, started

from pilothouse.runtime import agent, breaker, config, errors, llm, modelchecks, requests

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


def test_llama_cpp_refuses_a_null_content_and_the_client_blames_the_request(
    llama: LlamaServerProcess,
) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather_api", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        ],
    }
    response = httpx.post(f"{llama.url}/chat/completions", json=body, timeout=60)

    error = llm.classify_status(response, _model(llama), 0.0)
    # What this server does with OpenAI's own shape; whatever the status, it is the request's
    # fault, not the provider's health.
    if response.status_code >= 400:
        assert isinstance(error, errors.LLMRequestInvalid), response.text
    else:  # a llama.cpp that accepts null: then nothing to classify
        assert response.status_code == 200


async def test_a_tool_conversation_across_two_turns_of_a_session(
    llama: LlamaServerProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> None:
    cfg = _config(
        llama,
        unique_name,
        tools=standard_tools(tool_server.url)[:1],  # weather_api only: "required" picks it
        tool_choice="required",
        max_steps=3,
        failure_threshold=1,
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        first = await a.handle(
            requests.AgentRequest(input="What's the weather in Tokyo?", session_id="s")
        )
        second = await a.handle(
            requests.AgentRequest(input="And what about Paris?", session_id="s")
        )
        state = await a.chain.breakers.state(a.cfg.model.key)
        key, _ = a.sessions.keys("s") if a.sessions else ("", "")
        stored = [orjson.loads(m) for m in await redis_client.lrange(key, 0, -1)]

    for outcome in (first, second):
        calls = [d for d in outcome.decisions if d.action == "llm_call"]
        # Every request reached the model and was accepted: the tool exchange sent back
        # (assistant turn with tool calls, tool result) is one llama.cpp reads.
        assert calls, outcome.decisions
        assert all(d.outcome == "ok" for d in calls), [d.error for d in calls]
        # toolChoice required: the first call of each request is a tool call (llama.cpp reads a
        # named tool_choice object as "auto", so "required" is what forces a call there).
        assert outcome.result.actions, outcome.decisions
        assert outcome.result.actions[0].tool == "weather_api"
        assert outcome.result.status in (
            requests.ResultStatus.COMPLETED,
            requests.ResultStatus.FAILED,  # the tiny model kept calling tools to maxSteps
        )
    assert [r.path for r in tool_server.received].count("/weather") >= 2
    assert state.state is breaker.State.CLOSED
    # The second turn was sent with the first turn's tool exchange in its history.
    assert [m["role"] for m in stored].count("tool") >= 2
    assert all(isinstance(m["content"], str) for m in stored)


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
