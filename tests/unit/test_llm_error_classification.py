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


# --- errors the request's own body caused (not the provider's health) ------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        # llama.cpp's llama-server, for a null content beside tool calls
        (
            500,
            '{"error":{"code":500,"message":"[json.exception.type_error.302] type must be '
            'string, but is null","type":"server_error"}}',
        ),
        # vLLM / pydantic
        (
            400,
            '{"object":"error","message":"1 validation error for ChatCompletionRequest\\n'
            'messages.1.content Input should be a valid string","type":"BadRequestError"}',
        ),
        # a Rust server (serde)
        (
            422,
            "Failed to deserialize the JSON body: messages[1]: "
            "invalid type: null, expected a string",
        ),
        # OpenAI
        (
            400,
            '{"error":{"message":"Invalid value for \'content\'","type":"invalid_request_error"}}',
        ),
    ],
)
def test_validation_errors_blame_the_request_whatever_the_status(status: int, text: str) -> None:
    error = llm.classify_status(httpx.Response(status, text=text), MODEL, NOW)

    assert type(error) is errors.LLMRequestInvalid
    assert error.reason == "invalid_request"
    assert not isinstance(
        error, errors.TransientLLMError
    )  # not retried, not held against the breaker


def test_context_overflow_carries_the_numbers_the_server_gave() -> None:
    text = (
        '{"error":{"message":"This model\'s maximum context length is 8192 tokens. However, your '
        'messages resulted in 9000 tokens.","code":"context_length_exceeded"}}'
    )

    error = llm.classify_status(httpx.Response(400, text=text), MODEL, NOW)

    assert isinstance(error, errors.LLMContextOverflow)
    assert (error.limit_tokens, error.requested_tokens) == (8192, 9000)
    assert error.reason == "context_length_exceeded"


def test_llama_cpp_context_overflow_is_read_from_its_own_fields() -> None:
    text = (
        '{"error":{"code":400,"message":"the request exceeds the available context size, try '
        'increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}'
    )

    error = llm.classify_status(httpx.Response(400, text=text), MODEL, NOW)

    assert isinstance(error, errors.LLMContextOverflow)
    assert (error.limit_tokens, error.requested_tokens) == (4096, 5000)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_that_says_nothing_about_the_request_is_the_providers_trouble(status: int) -> None:
    error = llm.classify_status(httpx.Response(status, text="upstream connect error"), MODEL, NOW)

    assert type(error) is errors.LLMServerError


@pytest.mark.parametrize("status", [401, 403, 429])
def test_auth_and_rate_limits_are_never_the_bodys_fault(status: int) -> None:
    error = llm.classify_status(httpx.Response(status, text="validation error"), MODEL, NOW)

    assert not isinstance(error, errors.LLMRequestInvalid)


def test_a_few_kilobytes_of_the_providers_error_text_are_kept() -> None:
    cause = "the actual cause"
    text = "x" * 400 + cause + "y" * 10_000

    error = llm.classify_status(httpx.Response(500, text=text), MODEL, NOW)

    assert cause in str(error)
    assert len(str(error)) <= llm.ERROR_TEXT_CHARS + 100


def test_an_empty_answer_is_an_incomplete_response() -> None:
    assert llm.parse_completion(body(content=""), MODEL, 0).empty
    assert llm.parse_completion(body(content="  \n"), MODEL, 0).empty
    assert not llm.parse_completion(body(content="ok"), MODEL, 0).empty


@pytest.mark.parametrize(
    ("agent", "model", "first", "expected"),
    [
        (None, None, True, None),
        ("required", None, True, "required"),
        ("required", None, False, "auto"),
        ("weather_api", None, True, "weather_api"),
        ("weather_api", None, False, "auto"),
        ("none", None, False, "none"),
        ("auto", "required", True, "required"),
        ("required", "auto", True, "auto"),
    ],
)
def test_tool_choice_forces_only_the_first_call_and_a_model_overrides_the_agent(
    agent: str | None, model: str | None, first: bool, expected: str | None
) -> None:
    assert llm.effective_tool_choice(agent, model, first_call=first) == expected


def test_tool_choice_is_sent_as_the_openai_api_defines_it() -> None:
    assert llm.tool_choice_param("auto") == "auto"
    assert llm.tool_choice_param("required") == "required"
    assert llm.tool_choice_param("weather_api") == {
        "type": "function",
        "function": {"name": "weather_api"},
    }


def test_a_key_the_server_echoes_is_masked() -> None:
    response = httpx.Response(401, text='{"error": {"message": "Incorrect API key: sk-secret-1"}}')

    error = llm.classify_status(response, MODEL, NOW, secrets=["sk-secret-1"])

    assert "sk-secret-1" not in str(error)
    assert "Incorrect API key: ***" in str(error)
