"""The mock LLM over real HTTP: the built-in scenario's flows, the OpenAI response shape,
streaming, the model list, and concurrency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pilothouse.runtime.mockllm import MockLLMProcess, responses

pytestmark = pytest.mark.integration

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather_api",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
RETURN_TOOL = {
    "type": "function",
    "function": {
        "name": "initiate_return",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    },
}


@pytest.fixture
def client(llm: MockLLMProcess) -> Iterator[httpx.Client]:
    # These flows send what OpenAI itself accepts (a null content beside tool calls): the
    # mock's lenient default, not the strict mode the rest of the suite runs with.
    llm.admin.update_faults(strict=False)
    with httpx.Client(base_url=llm.url, timeout=10) as c:
        yield c


def chat(client: httpx.Client, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/chat/completions", json={"model": "mock-llm", "messages": messages, **extra}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert responses.completion_problems(response.content) == []
    body: dict[str, Any] = response.json()
    return body


def message_of(body: dict[str, Any]) -> dict[str, Any]:
    (choice,) = body["choices"]
    result: dict[str, Any] = choice["message"]
    return result


def test_what_is_two_plus_two_answers_four(client: httpx.Client) -> None:
    body = chat(client, [{"role": "user", "content": "What is 2+2?"}])
    assert "4" in message_of(body)["content"]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_the_response_has_the_openai_shape(client: httpx.Client) -> None:
    body = chat(
        client,
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello"}],
        temperature=0,
        max_tokens=100,
    )
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["created"] > 1_600_000_000
    assert body["model"] == "mock-llm"
    assert message_of(body)["role"] == "assistant"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_weather_calls_the_tool_and_then_answers_from_its_result(client: httpx.Client) -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": "What's the weather in Tokyo?"}
    ]
    first = chat(client, conversation, tools=[WEATHER_TOOL])
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assistant = message_of(first)
    (call,) = assistant["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "weather_api"
    assert json.loads(call["function"]["arguments"]) == {"city": "Tokyo"}

    conversation += [
        assistant,
        {
            "role": "tool",
            "tool_call_id": call["id"],
            "content": json.dumps({"city": "Tokyo", "temperature_c": 18, "conditions": "rainy"}),
        },
    ]
    second = chat(client, conversation, tools=[WEATHER_TOOL])
    answer = message_of(second)
    assert second["choices"][0]["finish_reason"] == "stop"
    assert not answer.get("tool_calls")
    assert "Tokyo" in answer["content"]
    assert "18" in answer["content"]
    assert "rainy" in answer["content"]


def test_the_return_flow_ends_in_initiate_return_for_the_order(client: httpx.Client) -> None:
    conversation: list[dict[str, Any]] = []

    def turn(text: str) -> dict[str, Any]:
        conversation.append({"role": "user", "content": text})
        body = chat(client, conversation, tools=[RETURN_TOOL, WEATHER_TOOL])
        conversation.append(message_of(body))
        return body

    asked = turn("I want to return my order")
    assert "order number" in message_of(asked)["content"].lower()
    confirm = turn("The order number is 12345")
    assert "12345" in message_of(confirm)["content"]
    assert "confirm" in message_of(confirm)["content"].lower()

    called = turn("Yes, that's correct")
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    (call,) = message_of(called)["tool_calls"]
    assert call["function"]["name"] == "initiate_return"
    assert json.loads(call["function"]["arguments"]) == {"order_id": "12345"}

    conversation.append(
        {"role": "tool", "tool_call_id": call["id"], "content": '{"status": "initiated"}'}
    )
    done = chat(client, conversation, tools=[RETURN_TOOL])
    assert "12345" in message_of(done)["content"]
    assert "initiated" in message_of(done)["content"]


def test_tool_call_ids_are_unique_across_requests(client: httpx.Client) -> None:
    ids = set()
    for _ in range(5):
        body = chat(client, [{"role": "user", "content": "weather in Oslo"}], tools=[WEATHER_TOOL])
        ids.add(message_of(body)["tool_calls"][0]["id"])
    assert len(ids) == 5


def test_streaming_sends_sse_chunks_ending_with_done(client: httpx.Client) -> None:
    with client.stream(
        "POST",
        "/chat/completions",
        json={
            "model": "mock-llm",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "What is 12 * 12?"}],
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "144" in text
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_streamed_tool_calls_arrive_whole(client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions",
        json={
            "model": "mock-llm",
            "stream": True,
            "tools": [WEATHER_TOOL],
            "messages": [{"role": "user", "content": "What's the weather in Lima?"}],
        },
    )
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert [c["function"]["name"] for c in calls] == ["weather_api"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Lima"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_models_are_listed(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["mock-llm", "mock-llm-fallback"]
    assert all(m["object"] == "model" for m in body["data"])


def test_paths_without_the_v1_prefix_work_too(llm: MockLLMProcess) -> None:
    response = httpx.post(
        f"{llm.base_url}/chat/completions",
        json={"model": "x", "messages": [{"role": "user", "content": "What is 3 + 4?"}]},
    )
    assert response.status_code == 200
    assert "7" in response.json()["choices"][0]["message"]["content"]


def test_a_swapped_scenario_answers_until_reset(llm: MockLLMProcess, client: httpx.Client) -> None:
    llm.admin.load_scenario({"name": "pirate", "rules": [{"content": "Arr, {message}!"}]})
    assert llm.admin.scenario()["name"] == "pirate"
    body = chat(client, [{"role": "user", "content": "hello"}])
    assert message_of(body)["content"] == "Arr, hello!"
    llm.admin.reset(scenario=True)
    body = chat(client, [{"role": "user", "content": "hello"}])
    assert message_of(body)["content"] == "Hello! How can I help you today?"


async def test_hundreds_of_concurrent_requests_are_all_answered(llm: MockLLMProcess) -> None:
    llm.admin.set_faults(latency_ms=50)
    limits = httpx.Limits(max_connections=256)
    async with httpx.AsyncClient(base_url=llm.url, timeout=30, limits=limits) as client:

        async def one(i: int) -> dict[str, Any]:
            response = await client.post(
                "/chat/completions",
                json={
                    "model": "mock-llm",
                    "messages": [{"role": "user", "content": f"What is {i} + 1?"}],
                },
            )
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

        bodies = await asyncio.gather(*(one(i) for i in range(256)))
    assert len({b["id"] for b in bodies}) == 256
    assert all(f"The answer is {i + 1}." in message_of(b)["content"] for i, b in enumerate(bodies))
    stats = llm.admin.stats()
    assert stats["by_outcome"] == {"ok": 256}
    assert stats["in_flight"] == 0
