"""Pure pieces of streaming and the OpenAI error shape: which event announces each action, and
how a native error answer becomes OpenAI's (a body in that shape already is kept)."""

from __future__ import annotations

from typing import Any

import orjson

from pilothouse.runtime import api_chat, edge, hooks, progress


def action(kind: hooks.ActionKind, **fields: Any) -> hooks.Action:
    return hooks.Action(kind=kind, agent_id="a", request_id="r-1", step=2, **fields)


def test_each_action_is_announced_with_what_a_caller_can_show() -> None:
    assert progress.started_event(action(hooks.ActionKind.REQUEST)) == {"type": "started"}
    assert progress.started_event(action(hooks.ActionKind.LLM_CALL)) == {
        "type": "llm_call_started",
        "step": 2,
    }
    tool = action(hooks.ActionKind.TOOL_CALL, tool_name="weather_api", params={"city": "Oslo"})
    assert progress.started_event(tool) == {
        "type": "tool_call_started",
        "step": 2,
        "tool": "weather_api",
        "params": {"city": "Oslo"},
    }


def test_a_native_error_becomes_openais_shape_naming_the_parameter() -> None:
    detail = [{"loc": ["body", "messages"], "msg": "too short", "type": "too_short"}]
    native = edge.error_body("invalid_request", "body.messages: too short", detail)
    doc = orjson.loads(api_chat._openai_body(400, native))
    assert doc == {
        "error": {
            "message": "body.messages: too short",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "invalid_request",
        }
    }
    unauthorized = orjson.loads(
        api_chat._openai_body(401, edge.error_body("unauthorized", "a token is required"))
    )
    assert unauthorized["error"]["type"] == "authentication_error"


def test_a_body_in_openais_shape_is_kept_and_text_is_wrapped() -> None:
    already = b'{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"c"}}'
    assert api_chat._openai_body(429, already) == already
    wrapped = orjson.loads(api_chat._openai_body(502, b"Bad Gateway"))
    assert wrapped["error"]["message"] == "Bad Gateway"
    assert wrapped["error"]["type"] == "server_error"
