"""The agent loop against a mock LLM that validates requests the way strict servers do
(llama.cpp's 500 for a null content, OpenAI's own checks), over HTTP, with real Redis sessions:
tool round trips across turns, sessions stored by older runtimes, a history the server refuses,
empty answers, context overflow, and ``toolChoice``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, standard_tools

from pilothouse.runtime import agent, breaker, requests, sessions
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def strict_llm(llm: MockLLMProcess) -> MockLLMProcess:
    """The mock answering what it refuses with a 500, as llama.cpp's server does."""
    llm.admin.update_faults(strict=True, strict_status=500)
    return llm


def _store(a: agent.Agent) -> sessions.SessionStore:
    assert a.sessions is not None
    return a.sessions


async def _stored(redis_client: aioredis.Redis, a: agent.Agent, session: str) -> list[Any]:
    key, _ = _store(a).keys(session)
    return [orjson.loads(m) for m in await redis_client.lrange(key, 0, -1)]


async def _seed(
    redis_client: aioredis.Redis, a: agent.Agent, session: str, msgs: list[Any]
) -> None:
    """A session as an older runtime (or another writer) left it, stored as is."""
    key, _ = _store(a).keys(session)
    await redis_client.rpush(key, *(orjson.dumps(m) for m in msgs))


@pytest.fixture
async def support_agent(
    strict_llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> AsyncIterator[agent.Agent]:
    cfg = agent_config(
        unique_name, strict_llm.url, tools=standard_tools(tool_server.url), failure_threshold=1
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        yield a


async def _breaker_state(a: agent.Agent) -> breaker.BreakerState:
    return await a.chain.breakers.state(a.cfg.model.key)


async def test_a_tool_conversation_across_two_turns_passes_the_strict_server(
    support_agent: agent.Agent, strict_llm: MockLLMProcess, redis_client: aioredis.Redis
) -> None:
    first = await support_agent.handle(
        requests.AgentRequest(input="What's the weather in Tokyo?", session_id="s1")
    )
    second = await support_agent.handle(
        requests.AgentRequest(input="And the weather in Paris?", session_id="s1")
    )

    assert first.result.status is requests.ResultStatus.COMPLETED
    assert second.result.status is requests.ResultStatus.COMPLETED
    assert [a.params for a in second.result.actions] == [{"city": "Paris"}]
    # The second turn sent the first turn's tool exchange back: the server accepted all of it.
    assert strict_llm.admin.stats()["by_status"] == {"200": 4}
    stored = await _stored(redis_client, support_agent, "s1")
    assert [m["role"] for m in stored].count("tool") == 2
    assert all(isinstance(m["content"], str) for m in stored)


async def test_a_session_stored_with_null_contents_is_repaired_and_kept_repaired(
    support_agent: agent.Agent, strict_llm: MockLLMProcess, redis_client: aioredis.Redis
) -> None:
    call = {"id": "call_9", "type": "function", "function": {"name": "weather_api"}}
    await _seed(
        redis_client,
        support_agent,
        "old",
        [
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_9", "content": '{"forecast": "snow"}'},
            {"role": "assistant", "content": "Snow in Oslo."},
        ],
    )

    outcome = await support_agent.handle(
        requests.AgentRequest(input="What is 2+2?", session_id="old")
    )

    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert "4" in outcome.result.answer
    repair = next(d for d in outcome.decisions if d.action == "session_repair")
    assert repair.action_params == {"changed": 1, "dropped": 0}
    assert strict_llm.admin.stats()["by_status"] == {"200": 1}
    stored = await _stored(redis_client, support_agent, "old")
    assert stored[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "weather_api", "arguments": "{}"},
            }
        ],
    }
    assert len(stored) == 6


async def test_a_history_the_server_refuses_is_dropped_once_and_the_breaker_stays_closed(
    support_agent: agent.Agent, strict_llm: MockLLMProcess, redis_client: aioredis.Redis
) -> None:
    # OpenAI refuses a name with a space; nothing in the runtime writes one, but a session is
    # data from the past: the agent must not fail on it forever.
    await _seed(
        redis_client,
        support_agent,
        "bad",
        [
            {"role": "user", "content": "hello", "name": "Jane Doe"},
            {"role": "assistant", "content": "Hi Jane."},
        ],
    )

    outcome = await support_agent.handle(
        requests.AgentRequest(input="What is 2+2?", session_id="bad")
    )
    later = await support_agent.handle(requests.AgentRequest(input="What is 3+3?"))

    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert "4" in outcome.result.answer
    actions = [(d.action, d.outcome) for d in outcome.decisions]
    assert actions == [
        ("request", "ok"),
        ("llm_call", "error"),
        ("session_repair", "error"),
        ("llm_call", "ok"),
        ("answer", "ok"),
    ]
    refused = outcome.decisions[1]
    assert "HTTP 500" in (refused.error or "")
    assert "messages[1].name" in (refused.error or "")  # the provider's own words are kept
    assert refused.action_params.get("next") == "not retried: not_transient"
    # One request refused with a 500 (threshold 1) did not open the breaker for everyone.
    assert (await _breaker_state(support_agent)).state is breaker.State.CLOSED
    assert later.result.status is requests.ResultStatus.COMPLETED
    assert strict_llm.admin.stats()["by_status"] == {"200": 2, "500": 1}
    stored = await _stored(redis_client, support_agent, "bad")
    assert [m["content"] for m in stored] == ["What is 2+2?", outcome.result.answer]


async def test_an_empty_answer_is_asked_again_once_then_the_request_is_incomplete(
    support_agent: agent.Agent, strict_llm: MockLLMProcess
) -> None:
    strict_llm.admin.load_scenario(
        {
            "name": "silent",
            "models": ["mock-llm"],
            "rules": [{"name": "silent", "match": "say nothing", "content": ""}],
        }
    )

    outcome = await support_agent.handle(requests.AgentRequest(input="Please say nothing."))

    result = outcome.result
    assert result.status is requests.ResultStatus.FAILED
    assert result.answer == support_agent.cfg.incomplete_response
    assert result.fallback_reason == "empty_response"
    calls = [d for d in outcome.decisions if d.action == "llm_call"]
    assert [(d.action_params["attempt"], d.outcome) for d in calls] == [(1, "error"), (2, "error")]
    assert all("empty answer" in (d.error or "") for d in calls)
    assert calls[0].action_params["next"] == "retry in 0.000s"
    assert outcome.decisions[-1].action == "stopped"
    assert strict_llm.admin.stats()["by_status"] == {"200": 2}
    assert (await _breaker_state(support_agent)).state is breaker.State.CLOSED


async def test_an_empty_answer_moves_on_to_the_fallback_model(
    strict_llm: MockLLMProcess, redis_client: aioredis.Redis, unique_name: str
) -> None:
    strict_llm.admin.load_scenario(
        {
            "name": "one-silent-model",
            "models": ["mock-llm", "backup"],
            "rules": [
                {"name": "silent", "match": "hello", "model": ["mock-llm"], "content": ""},
                {"name": "spoken", "match": "hello", "content": "Hello from the backup."},
            ],
        }
    )
    cfg = agent_config(unique_name, strict_llm.url, models=("mock-llm", "backup"))
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="hello"))

    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert outcome.result.answer == "Hello from the backup."
    assert outcome.result.fallback_reason == "empty_response"
    models = [d.action_params["model"] for d in outcome.decisions if d.action == "llm_call"]
    assert models == ["mock-llm", "mock-llm", "backup"]


async def test_context_overflow_trims_the_oldest_history_and_asks_again(
    support_agent: agent.Agent, strict_llm: MockLLMProcess, redis_client: aioredis.Redis
) -> None:
    old_turns: list[Any] = []
    for n in range(4):
        old_turns += [
            {"role": "user", "content": f"old question {n} " + "words " * 200},
            {"role": "assistant", "content": f"old answer {n}"},
        ]
    await _seed(redis_client, support_agent, "long", old_turns)
    strict_llm.admin.update_faults(context_window=700)

    outcome = await support_agent.handle(
        requests.AgentRequest(input="What is 2+2?", session_id="long")
    )

    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert "4" in outcome.result.answer
    actions = [(d.action, d.outcome) for d in outcome.decisions]
    assert actions == [
        ("request", "ok"),
        ("llm_call", "error"),
        ("history_trim", "ok"),
        ("llm_call", "ok"),
        ("answer", "ok"),
    ]
    assert "maximum context length is 700 tokens" in (outcome.decisions[1].error or "")
    trim = outcome.decisions[2].action_params
    assert 0 < trim["dropped_messages"] < len(old_turns)
    assert trim["kept"] == len(old_turns) - trim["dropped_messages"]
    # The session keeps what fits, so the next turn does not overflow again.
    stored = await _stored(redis_client, support_agent, "long")
    assert len(stored) == trim["kept"] + 2
    assert (await _breaker_state(support_agent)).state is breaker.State.CLOSED


async def test_an_input_that_alone_does_not_fit_is_rejected_not_answered_by_rules(
    support_agent: agent.Agent, strict_llm: MockLLMProcess
) -> None:
    strict_llm.admin.update_faults(context_window=100)

    outcome = await support_agent.handle(requests.AgentRequest(input="Explain " + "this " * 200))

    result = outcome.result
    assert result.status is requests.ResultStatus.REJECTED
    assert result.fallback_reason == "input_too_long"
    assert "too long" in result.answer
    assert "100 tokens" in (result.refusal_reason or "")
    assert [d.action for d in outcome.decisions] == ["request", "llm_call", "rejected"]
    assert strict_llm.admin.stats()["by_status"] == {"400": 1}


async def test_tool_choice_none_is_passed_through(
    strict_llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> None:
    cfg = agent_config(
        unique_name, strict_llm.url, tools=standard_tools(tool_server.url), tool_choice="none"
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What's the weather in Tokyo?"))

    # The mock offers the model no tool under tool_choice "none": the weather rule cannot fire.
    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert outcome.result.actions == ()
    assert tool_server.received == []


async def test_the_api_key_can_travel_in_the_azure_api_key_header(
    redis_client: aioredis.Redis, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_KEY", "azure-key")
    monkeypatch.setenv("WRONG_KEY", "not-the-key")
    with MockLLMProcess(api_key="azure-key") as llm:
        base = agent_config(unique_name, llm.url, attempts=1)
        azure = base.model.model_copy(
            update={"api_key_env": "AZURE_KEY", "api_key_header": "api-key", "api_version": "v1"}
        )
        wrong = azure.model_copy(update={"api_key_env": "WRONG_KEY"})
        outcomes = []
        for model in (azure, wrong):
            cfg = base.model_copy(update={"model": model})
            async with agent.build_agent(cfg, redis=redis_client) as a:
                outcomes.append(await a.handle(requests.AgentRequest(input="What is 2+2?")))
        stats = llm.admin.stats()

    assert outcomes[0].result.status is requests.ResultStatus.COMPLETED
    assert outcomes[1].result.status is requests.ResultStatus.FALLBACK
    assert outcomes[1].result.fallback_reason == "rejected"
    assert stats["by_status"] == {"200": 1, "401": 1}


async def test_a_forced_tool_choice_holds_for_the_first_call_then_auto(
    strict_llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> None:
    cfg = agent_config(
        unique_name,
        strict_llm.url,
        tools=standard_tools(tool_server.url),
        tool_choice="weather_api",
    )
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What's the weather in Tokyo?"))

    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert [a.tool for a in outcome.result.actions] == ["weather_api"]
    # Sent as {"type": "function", "function": {"name": "weather_api"}}, which the mock
    # validated against the tools offered; then "auto" so the model could answer in words.
    assert strict_llm.admin.stats()["by_tool_choice"] == {"weather_api": 1, "auto": 1}


async def test_a_models_tool_choice_overrides_the_agents(
    strict_llm: MockLLMProcess,
    tool_server: ToolServer,
    redis_client: aioredis.Redis,
    unique_name: str,
) -> None:
    base = agent_config(
        unique_name, strict_llm.url, tools=standard_tools(tool_server.url), tool_choice="required"
    )
    cfg = base.model_copy(update={"model": base.model.model_copy(update={"tool_choice": "none"})})
    async with agent.build_agent(cfg, redis=redis_client) as a:
        outcome = await a.handle(requests.AgentRequest(input="What's the weather in Tokyo?"))

    assert outcome.result.actions == ()
    assert strict_llm.admin.stats()["by_tool_choice"] == {"none": 1}
