"""The Chat Completions wire format: request validation and response shapes (pure)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from pilothouse.runtime import errors as runtime_errors
from pilothouse.runtime.mockllm import completions, errors, responses


def parse(body: Any) -> completions.ChatRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return completions.parse_chat_request(raw)


def rejection(body: Any) -> errors.InvalidRequestError:
    with pytest.raises(errors.InvalidRequestError) as caught:
        parse(body)
    return caught.value


USER = {"role": "user", "content": "hi"}


def test_a_minimal_request_parses() -> None:
    req = parse({"model": "m", "messages": [USER]})
    assert req.model == "m"
    assert req.messages == (completions.Message(role="user", content="hi"),)
    assert (req.stream, req.tools, req.max_tokens) == (False, (), None)


def test_a_full_request_parses() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "sys"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "t", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "r"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "t"}},
            "max_tokens": 10,
            "temperature": 0.2,
            "stream": True,
            "stream_options": {"include_usage": True},
            "top_p": 1,
            "seed": 4,
            "user": "someone",
        }
    )
    assert req.messages[1].content == "ab"
    assert req.messages[2].tool_calls == (completions.ToolCall("c", "t", "{}"),)
    assert req.messages[3].tool_call_id == "c"
    assert (req.tools, req.tool_choice, req.offered_tools) == (("t",), "t", frozenset({"t"}))
    assert (req.max_tokens, req.temperature, req.stream, req.include_usage) == (10, 0.2, True, True)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        ([1, 2], None, "invalid_json"),
        ({"messages": [USER]}, "model", "missing_required_parameter"),
        ({"model": 3, "messages": [USER]}, "model", "invalid_type"),
        ({"model": "", "messages": [USER]}, "model", "invalid_value"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "empty_array"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        (
            {"model": "m", "messages": [{"content": "x"}]},
            "messages[0].role",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user"}]},
            "messages[0].content",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_type",
        ),
        (
            {"model": "m", "messages": [USER, {"role": "tool", "content": "r"}]},
            "messages[1].tool_call_id",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}],
            },
            "messages[0].tool_calls[0].id",
            "missing_required_parameter",
        ),
        ({"model": "m", "messages": [USER], "tools": {}}, "tools", "invalid_type"),
        (
            {"model": "m", "messages": [USER], "tools": [{"type": "function"}]},
            "tools[0].function",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [USER], "tool_choice": "sometimes"},
            "tool_choice",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": [USER],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice",
            "invalid_value",
        ),
        ({"model": "m", "messages": [USER], "max_tokens": "10"}, "max_tokens", "invalid_type"),
        ({"model": "m", "messages": [USER], "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"model": "m", "messages": [USER], "temperature": "hot"}, "temperature", "invalid_type"),
        ({"model": "m", "messages": [USER], "temperature": 3}, "temperature", "invalid_value"),
        ({"model": "m", "messages": [USER], "stream": "yes"}, "stream", "invalid_type"),
    ],
)
def test_bad_requests_name_the_parameter(body: Any, param: str | None, code: str) -> None:
    e = rejection(body)
    assert (e.param, e.code) == (param, code)
    if param is not None:
        assert param in e.message


def test_invalid_requests_are_usage_errors() -> None:
    assert isinstance(rejection({"model": "m"}), runtime_errors.UsageError)


def test_completion_has_the_openai_shape() -> None:
    req = parse({"model": "gpt", "messages": [USER]})
    body = responses.build_completion(
        req, completions.Reply(content="hello world"), completion_id="chatcmpl-1", created=5
    )
    assert body["id"] == "chatcmpl-1"
    assert body["object"] == "chat.completion"
    assert (body["created"], body["model"]) == (5, "gpt")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "hello world", "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == 3  # ceil(11 / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_tool_calls_finish_with_tool_calls() -> None:
    req = parse({"model": "m", "messages": [USER]})
    call = completions.ToolCall("call_1", "weather_api", '{"city":"Tokyo"}')
    body = responses.build_completion(
        req, completions.Reply(content=None, tool_calls=(call,)), completion_id="x", created=0
    )
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather_api", "arguments": '{"city":"Tokyo"}'},
        }
    ]


def test_usage_is_deterministic_and_grows_with_the_prompt() -> None:
    short = parse({"model": "m", "messages": [USER]})
    long = parse({"model": "m", "messages": [{"role": "user", "content": "x" * 400}]})
    reply = completions.Reply(content="ok")

    def usage(r: completions.ChatRequest) -> dict[str, int]:
        result: dict[str, int] = responses.build_completion(r, reply, completion_id="x", created=0)[
            "usage"
        ]
        return result

    assert usage(short) == usage(short)
    assert usage(long)["prompt_tokens"] >= usage(short)["prompt_tokens"] + 99


def test_max_tokens_cuts_the_content_and_finishes_with_length() -> None:
    req = parse({"model": "m", "messages": [USER], "max_tokens": 2})
    body = responses.build_completion(
        req, completions.Reply(content="a" * 100), completion_id="x", created=0
    )
    assert body["choices"][0]["message"]["content"] == "a" * 8
    assert body["choices"][0]["finish_reason"] == "length"


def test_stream_chunks_add_up_to_the_reply() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [USER],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    content = "The quick brown fox jumps over the lazy dog, twice over."
    chunks = responses.build_chunks(
        req, completions.Reply(content=content), completion_id="c", created=0
    )
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "c" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == content
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_streamed_tool_calls_carry_index_and_arguments() -> None:
    req = parse({"model": "m", "messages": [USER], "stream": True})
    call = completions.ToolCall("c1", "t", '{"a": 1}')
    chunks = responses.build_chunks(
        req, completions.Reply(content=None, tool_calls=(call,)), completion_id="c", created=0
    )
    deltas = [c["choices"][0]["delta"] for c in chunks]
    (tool_delta,) = [d for d in deltas if "tool_calls" in d]
    assert tool_delta["tool_calls"][0]["index"] == 0
    assert json.loads(tool_delta["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_error_body_has_the_openai_shape() -> None:
    assert responses.build_error("bad", param="messages", code="x") == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "x",
        }
    }
