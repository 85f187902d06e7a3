"""The agent as an OpenAI chat model: the official ``openai`` client (sync, async, streaming)
against ``pilothouse serve`` started as a real process with real Redis, PostgreSQL, the mock
LLM, a real tool server and bearer authentication on. Answers carry usage and cost, a request id
from ``Idempotency-Key`` is answered and audited once, a conversation the caller keeps reaches
the agent as history (it completes a return over three turns without a session), streams carry
the step events before the content, an escalation streams as a step and resumes when a human
approves it, a rate limit or a full queue is a 429 with ``Retry-After``, and every error is in
OpenAI's shape with its status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import (
    Launcher,
    audit_counts,
    await_for,
    launcher,
    runtime_config,
    runtime_env,
    wait_for,
)

from pilothouse.runtime import testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

AGENT = "chat-agent"
TOKEN = "chat-token"
RETURN_CONVERSATION: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "I want to return my order"},
    {"role": "assistant", "content": "Sure. What is the order number?"},
    {"role": "user", "content": "The order number is 12345"},
    {"role": "assistant", "content": "Order 12345, is that correct?"},
    {"role": "user", "content": [{"type": "text", "text": "Yes, that's correct"}]},
]


@pytest.fixture(scope="module")
def runtime(
    redis_url: str,
    postgres_dsn: str,
    module_tool_server: ToolServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[testing.RuntimeProcess]:
    tools = [
        t.model_dump(mode="json", by_alias=True) for t in standard_tools(module_tool_server.url)
    ]
    workdir: Path = tmp_path_factory.mktemp("chat")
    secret = workdir / "tokens"
    secret.write_text(f"{TOKEN} chat-frontend submit\n")  # TOKEN IDENTITY ROLES
    with MockLLMProcess(seed=7) as llm:
        cfg = runtime_config(AGENT, llm.url, tools=tools, server={"authTokensFile": str(secret)})
        with testing.RuntimeProcess(
            cfg, env=runtime_env(redis_url, postgres_dsn), workdir=workdir
        ) as rt:
            yield rt


@pytest.fixture
def client(runtime: testing.RuntimeProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key=TOKEN, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
def native(runtime: testing.RuntimeProcess) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=runtime.url, headers=headers, timeout=30) as c:
        yield c


def test_a_chat_completion_is_the_agents_answer_with_usage_and_cost(
    client: openai.OpenAI, native: httpx.Client
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=AGENT, messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    completion = raw.parse()
    rid = raw.headers["x-request-id"]
    assert completion.id == f"chatcmpl-{rid}"
    assert completion.object == "chat.completion"
    assert completion.model == AGENT
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert "4" in choice.message.content

    # The same request, read through the native API: the same answer, tokens and cost.
    state = native.get(f"/v1/requests/{rid}").json()
    result = state["result"]
    assert state["state"] == "done"
    assert result["answer"] == choice.message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == result["input_tokens"] > 0
    assert completion.usage.completion_tokens == result["output_tokens"] > 0
    assert completion.usage.total_tokens == result["input_tokens"] + result["output_tokens"]
    assert (completion.usage.model_extra or {})["cost"] == result["cost_usd"]
    extension = (completion.model_extra or {})["pilothouse"]
    assert extension["request_id"] == rid
    assert extension["status"] == "completed"
    assert extension["cost_usd"] == result["cost_usd"]


def test_the_models_list_names_the_agent(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [AGENT]


async def test_an_idempotency_key_is_answered_and_audited_once(
    client: openai.OpenAI, postgres_dsn: str, unique_name: str
) -> None:
    key = f"chat-{unique_name}"
    messages: list[Any] = [{"role": "user", "content": "What is 2+2?"}]
    first = client.chat.completions.create(
        model=AGENT, messages=messages, extra_headers={"Idempotency-Key": key}
    )
    again = client.chat.completions.create(
        model=AGENT, messages=messages, extra_headers={"Idempotency-Key": key}
    )
    assert first.id == again.id == f"chatcmpl-{key}"
    assert again.choices[0].message.content == first.choices[0].message.content

    async def audited() -> dict[str, tuple[int, int, int]] | None:
        counts = await audit_counts(postgres_dsn, [key])
        return counts if counts[key][0] else None

    counts = await await_for(audited, within=20, what="the audit summary of the request")
    summaries, decisions, steps = counts[key]
    assert summaries == 1
    assert decisions == steps  # one record per step: the request ran once


def test_a_conversation_the_caller_keeps_reaches_the_agent_as_history(
    client: openai.OpenAI, module_tool_server: ToolServer
) -> None:
    before = len(module_tool_server.received)
    completion = client.chat.completions.create(model=AGENT, messages=RETURN_CONVERSATION)
    extension = (completion.model_extra or {})["pilothouse"]
    assert [(a["tool"], a["params"]) for a in extension["actions"]] == [
        ("initiate_return", {"order_id": "12345"})
    ]
    assert [(r.method, r.path, r.body) for r in module_tool_server.received[before:]] == [
        ("POST", "/returns", {"order_id": "12345"})
    ]


def test_a_session_header_lets_the_agent_keep_the_conversation(
    client: openai.OpenAI, module_tool_server: ToolServer, unique_name: str
) -> None:
    before = len(module_tool_server.received)
    session = {"X-Session-Id": f"s-{unique_name}"}
    answers = []
    for text in ("I want to return my order", "The order number is 12345", "Yes, that's correct"):
        completion = client.chat.completions.create(
            model=AGENT, messages=[{"role": "user", "content": text}], extra_headers=session
        )
        answers.append((completion.model_extra or {})["pilothouse"])
    assert {a["session_id"] for a in answers} == {f"s-{unique_name}"}
    assert [(a["tool"], a["params"]) for a in answers[2]["actions"]] == [
        ("initiate_return", {"order_id": "12345"})
    ]
    assert [(r.method, r.path) for r in module_tool_server.received[before:]] == [
        ("POST", "/returns")
    ]


def test_a_stream_sends_step_events_then_the_answer_then_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=AGENT,
        messages=RETURN_CONVERSATION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    # What each chunk was, in order: role, events, content, finish, usage.
    kinds = []
    for c in chunks:
        extra = c.model_extra or {}
        if not c.choices:
            kinds.append("usage")
        elif c.choices[0].delta.role == "assistant":
            kinds.append("role")
        elif "event" in extra.get("pilothouse", {}):
            kinds.append("event")
        elif c.choices[0].finish_reason == "stop":
            kinds.append("finish")
        else:
            kinds.append("content")
    assert kinds[0] == "role"
    assert kinds[-2:] == ["finish", "usage"]
    middle = kinds[1:-2]
    assert middle == sorted(middle, key=["event", "content"].index)
    assert "content" in middle
    assert len({c.id for c in chunks}) == 1

    events = [
        (c.model_extra or {})["pilothouse"]["event"]
        for c, kind in zip(chunks, kinds, strict=True)
        if kind == "event"
    ]
    # Each step as it started (the stream was open before the request was queued), then the
    # outcome of the tool call once answered.
    assert [e["type"] for e in events] == [
        "started",
        "llm_call_started",
        "tool_call_started",
        "llm_call_started",
        "tool_call",
    ]
    assert (events[2]["tool"], events[2]["params"]) == ("initiate_return", {"order_id": "12345"})
    assert (events[-1]["tool"], events[-1]["ok"]) == ("initiate_return", True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = (chunks[-2].model_extra or {})["pilothouse"]
    assert final["status"] == "completed"
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.total_tokens > 0

    # The streamed text is the stored answer, word for word.
    rid = final["request_id"]
    assert chunks[0].id == f"chatcmpl-{rid}"
    with httpx.Client(base_url=str(client.base_url).removesuffix("/v1/")) as native:
        stored = native.get(
            f"/v1/requests/{rid}", headers={"authorization": f"Bearer {TOKEN}"}
        ).json()
    assert text == stored["result"]["answer"]


async def test_the_async_client_gets_concurrent_answers(runtime: testing.RuntimeProcess) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{runtime.url}/v1", api_key=TOKEN, max_retries=0, timeout=30
    ) as client:
        questions = ["What is 2+2?", "What's the weather in Tokyo?", "What is 2+2?"]
        completions = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=AGENT, messages=[{"role": "user", "content": q}]
                )
                for q in questions
            )
        )
        assert len({c.id for c in completions}) == len(questions)
        assert "4" in (completions[0].choices[0].message.content or "")
        weather = (completions[1].model_extra or {})["pilothouse"]["actions"]
        assert [(a["tool"], a["params"]) for a in weather] == [("weather_api", {"city": "Tokyo"})]

        stream = await client.chat.completions.create(
            model=AGENT, messages=[{"role": "user", "content": "What is 2+2?"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert "4" in text


def test_errors_are_in_openais_shape_with_their_status(
    client: openai.OpenAI, runtime: testing.RuntimeProcess
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"
    assert AGENT in missing.value.message

    with pytest.raises(openai.BadRequestError) as last:
        client.chat.completions.create(
            model=AGENT, messages=[{"role": "assistant", "content": "hello"}]
        )
    assert last.value.type == "invalid_request_error"
    assert "messages[0]" in last.value.message
    assert "the user's" in last.value.message

    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model=AGENT, messages=[])
    assert empty.value.status_code == 400
    assert empty.value.param == "messages"

    with pytest.raises(openai.BadRequestError) as bad_id:
        client.chat.completions.create(
            model=AGENT,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"Idempotency-Key": "not a valid id"},
        )
    assert bad_id.value.param == "Idempotency-Key"

    stranger = openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="wrong", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError) as denied:
        stranger.chat.completions.create(model=AGENT, messages=[{"role": "user", "content": "hi"}])
    assert denied.value.type == "authentication_error"
    assert denied.value.code == "unauthorized"


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def test_a_full_queue_is_a_rate_limit_error_with_retry_after(
    launch: Launcher, llm: MockLLMProcess, unique_name: str
) -> None:
    doc = runtime_config(unique_name, llm.url, workers={"queueMaxLength": 2})
    api = launch(doc, role="api")  # no worker: nothing drains the queue
    with httpx.Client(base_url=api.url) as native:
        for _ in range(2):
            assert native.post("/v1/requests", json={"input": "hi"}).status_code == 202
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="none", max_retries=0) as client:
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as full:
                client.chat.completions.create(
                    model=unique_name,
                    messages=[{"role": "user", "content": "What is 2+2?"}],
                    stream=stream,
                )
            assert full.value.code == "queue_full"
            assert full.value.type == "rate_limit_error"
            assert int(full.value.response.headers["retry-after"]) >= 1


def test_a_rate_limit_policy_is_a_rate_limit_error_with_retry_after(
    launch: Launcher, llm: MockLLMProcess, unique_name: str
) -> None:
    policy = {"name": "per-user", "rateLimit": {"requestsPerMinute": 1, "per": "user"}}
    api = launch(runtime_config(unique_name, llm.url, policies=[policy]))
    messages: list[Any] = [{"role": "user", "content": "What is 2+2?"}]
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="none", max_retries=0) as client:
        first = client.chat.completions.create(model=unique_name, messages=messages, user="ann")
        assert "4" in (first.choices[0].message.content or "")

        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model=unique_name, messages=messages, user="ann")
        assert limited.value.code == "rate_limit_exceeded"
        assert limited.value.type == "rate_limit_error"
        assert "1 requests/minute" in limited.value.message
        # One request a minute, the first just spent: the next passes within the minute.
        assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60

        # Streaming: the stream has begun when the refusal comes; it ends with the error.
        stream = client.chat.completions.create(
            model=unique_name, messages=messages, user="ann", stream=True
        )
        with pytest.raises(openai.APIError) as in_stream:
            list(stream)
        assert in_stream.value.code == "rate_limit_exceeded"

        # Another user has a budget of their own.
        other = client.chat.completions.create(model=unique_name, messages=messages, user="bob")
        assert "4" in (other.choices[0].message.content or "")


def test_an_escalation_streams_as_a_step_and_a_human_can_approve_it(
    launch: Launcher, llm: MockLLMProcess, tool_server: ToolServer, unique_name: str
) -> None:
    tools = [t.model_dump(mode="json", by_alias=True) for t in standard_tools(tool_server.url)]
    policies = [{"name": "refunds", "escalation": {"tools": ["initiate_return"]}}]
    api = launch(runtime_config(unique_name, llm.url, tools=tools, policies=policies))
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="none", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model=unique_name, messages=RETURN_CONVERSATION, stream=True
            )
        )
    events = [
        (c.model_extra or {})["pilothouse"]["event"]
        for c in chunks
        if "event" in (c.model_extra or {}).get("pilothouse", {})
    ]
    assert [e["type"] for e in events][-2:] == ["tool_call_started", "escalated"]
    escalation = events[-1]
    assert escalation["policy"] == "refunds"
    final = (chunks[-1].model_extra or {})["pilothouse"]
    assert final["status"] == "escalated"
    assert final["escalation_id"] == escalation["escalation_id"]
    assert tool_server.received == []  # nothing done before a human says so

    with httpx.Client(base_url=api.url, timeout=30) as native:
        approved = native.post(f"/v1/escalations/{escalation['escalation_id']}/approve", json={})
        assert approved.status_code == 202, approved.text

        def resumed() -> dict[str, Any] | None:
            state = native.get(f"/v1/requests/{final['request_id']}").json()
            result: dict[str, Any] | None = state.get("result")
            return result if result and result["status"] != "escalated" else None

        result = wait_for(resumed, timeout=20, what="the approved request to complete")
    assert result["status"] == "completed"
    assert [(r.method, r.path) for r in tool_server.received] == [("POST", "/returns")]
