"""How the LLM client reads answers: a completion, or an error of the right family
(transient: 429 with Retry-After, 5xx, 408; permanent: other 4xx, malformed bodies)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import orjson
import pytest

from pilothouse.runtime import config, errors, llm

MODEL = config.ModelConfig(
    endpoint="http://llm.example/v1",
    name="m1",
    pricing=config.ModelPricing(input_per_million_tokens=2.0, output_per_million_tokens=8.0),
)
NOW = 1_750_000_000.0


def body(**message: object) -> bytes:
    return orjson.dumps(
        {
            "model": "m1-2025",
            "choices": [
                {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500},
        }
    )


def test_a_text_answer_with_usage_and_cost() -> None:
    c = llm.parse_completion(body(content="4"), MODEL, 0.1)
    assert c.content == "4"
    assert c.tool_calls == ()
    assert (c.input_tokens, c.output_tokens) == (1000, 500)
    assert c.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1_000_000)
    assert c.model == "m1-2025"
    assert c.finish_reason == "stop"
    assert c.assistant_message() == {"role": "assistant", "content": "4"}


def test_tool_calls_are_read_and_replayable() -> None:
    raw = body(
        content=None,
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather_api", "arguments": '{"city": "Tokyo"}'},
            }
        ],
    )
    c = llm.parse_completion(raw, MODEL, 0.1)
    assert c.tool_calls == (llm.ToolCall("call_1", "weather_api", '{"city": "Tokyo"}'),)
    assert c.assistant_message()["tool_calls"][0]["function"]["name"] == "weather_api"


def test_arguments_sent_as_an_object_become_json_text() -> None:
    raw = body(
        content=None, tool_calls=[{"id": "c", "function": {"name": "t", "arguments": {"a": 1}}}]
    )
    assert orjson.loads(llm.parse_completion(raw, MODEL, 0).tool_calls[0].arguments) == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b'{"id": "chatcmpl-broken", "choices": [{"ind', "not JSON"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "not JSON"),
        (b"", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"id": "x", "model": "?"}', "no choices"),
        (b'{"choices": []}', "no choices"),
        (b'{"choices": [{"index": 0}]}', "message is missing"),
        (b'{"choices": [{"message": {"role": "assistant"}}]}', "neither content nor tool calls"),
        (b'{"choices": [{"message": {"content": 5}}]}', "content is not a string"),
        (b'{"choices": [{"message": {"content": "x"}}], "usage": 7}', "usage is not an object"),
        (b'{"choices": [{"message": {"tool_calls": [{"id": "c"}]}}]}', "no function name"),
    ],
)
def test_malformed_bodies_are_permanent_errors_that_say_what(raw: bytes, what: str) -> None:
    with pytest.raises(errors.LLMMalformedResponse, match=what) as info:
        llm.parse_completion(raw, MODEL, 0)
    assert isinstance(info.value, errors.PermanentLLMError)
    assert info.value.model == MODEL.key


@pytest.mark.parametrize(
    ("status", "family", "reason"),
    [
        (429, errors.LLMRateLimited, "rate_limited"),
        (500, errors.LLMServerError, "server_error"),
        (503, errors.LLMServerError, "server_error"),
        (408, errors.LLMServerError, "server_error"),
        (400, errors.LLMRequestRejected, "rejected"),
        (401, errors.LLMRequestRejected, "rejected"),
        (404, errors.LLMRequestRejected, "rejected"),
    ],
)
def test_statuses_are_classified(status: int, family: type[errors.LLMError], reason: str) -> None:
    response = httpx.Response(status, text='{"error": {"message": "nope"}}')
    error = llm.classify_status(response, MODEL, NOW)
    assert type(error) is family
    assert error.reason == reason
    assert error.status == status
    assert "nope" in str(error)
    transient = status in (429, 500, 503, 408)
    assert isinstance(error, errors.TransientLLMError) is transient
    assert isinstance(error, errors.PermanentLLMError) is not transient


def test_429_carries_retry_after_seconds() -> None:
    response = httpx.Response(429, headers={"Retry-After": "3"})
    error = llm.classify_status(response, MODEL, NOW)
    assert isinstance(error, errors.LLMRateLimited)
    assert error.retry_after == 3.0


def test_429_without_retry_after() -> None:
    error = llm.classify_status(httpx.Response(429), MODEL, NOW)
    assert isinstance(error, errors.LLMRateLimited)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert llm.parse_retry_after(value, NOW) == expected


async def test_a_missing_api_key_is_a_permanent_error_naming_the_variable() -> None:
    model = MODEL.model_copy(update={"api_key_env": "PILOTHOUSE_TEST_NO_SUCH_KEY"})
    client = llm.LLMClient(environ={})
    try:
        with pytest.raises(errors.LLMRequestRejected, match="PILOTHOUSE_TEST_NO_SUCH_KEY"):
            await client.chat(model, [{"role": "user", "content": "hi"}], time_limit=1.0)
    finally:
        await client.aclose()


async def test_no_time_left_means_no_call() -> None:
    client = llm.LLMClient(environ={})
    try:
        with pytest.raises(errors.DeadlineExceeded):
            await client.chat(MODEL, [{"role": "user", "content": "hi"}], time_limit=0.0)
    finally:
        await client.aclose()
