"""Messages go out, and into sessions, in the one shape every common server accepts; a stored
history that no server would accept is repaired; an overflowing history is trimmed by turns."""

from __future__ import annotations

import copy
from typing import Any

from pilothouse.runtime import conversations, llm

CALL = {"id": "call_1", "type": "function", "function": {"name": "weather_api", "arguments": "{}"}}


def test_null_content_beside_tool_calls_becomes_an_empty_string() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    original = copy.deepcopy(message)

    out = conversations.normalise_message(message)

    assert out == {"role": "assistant", "content": "", "tool_calls": [CALL]}
    assert message == original  # the input is not changed


def test_a_missing_content_key_is_added_and_empty_tool_calls_removed() -> None:
    out = conversations.normalise_message({"role": "assistant", "tool_calls": []})

    assert out == {"role": "assistant", "content": ""}


def test_content_parts_become_their_text_and_other_values_their_json() -> None:
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "b"},
    ]

    assert conversations.normalise_message({"role": "user", "content": parts})["content"] == "ab"
    assert conversations.normalise_message(
        {"role": "tool", "tool_call_id": "c", "content": {"x": 1}}
    ) == {
        "role": "tool",
        "tool_call_id": "c",
        "content": '{"x":1}',
    }


def test_tool_call_arguments_become_json_text_and_unknown_keys_go() -> None:
    message = {
        "role": "assistant",
        "content": "",
        "refusal": None,
        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}],
    }

    out = conversations.normalise_message(message)

    assert out == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }


def test_the_assistant_turn_of_a_completion_is_already_normalised() -> None:
    completion = llm.Completion(
        content=None,
        tool_calls=(llm.ToolCall("call_1", "weather_api", "{}"),),
        finish_reason="tool_calls",
        model="m",
    )

    message = completion.assistant_message()

    assert message["content"] == ""
    assert conversations.normalise_message(message) == message


def _turn(n: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"question {n} " + "x" * 400},
        {"role": "assistant", "content": None, "tool_calls": [{**CALL, "id": f"call_{n}"}]},
        {"role": "tool", "tool_call_id": f"call_{n}", "content": "{}"},
        {"role": "assistant", "content": f"answer {n}"},
    ]


def test_a_history_stored_with_null_contents_is_repaired_and_counted() -> None:
    history = _turn(1) + _turn(2)

    repair = conversations.repair_history(history)

    assert (repair.changed, repair.dropped, repair.needed) == (2, 0, True)
    assert all(isinstance(m["content"], str) for m in repair.messages)
    assert len(repair.messages) == len(history)


def test_orphan_tool_results_and_unanswered_tool_calls_are_dropped() -> None:
    history = [
        {"role": "tool", "tool_call_id": "gone", "content": "{}"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "user", "content": "hello?"},
        {"role": "assistant", "content": "hello"},
    ]

    repair = conversations.repair_history(history)

    assert [m["role"] for m in repair.messages] == ["user", "user", "assistant"]
    assert (repair.dropped, repair.changed) == (2, 0)


def test_a_valid_history_needs_no_repair() -> None:
    history = conversations.normalise_messages(_turn(1))

    assert not conversations.repair_history(history).needed


def test_trimming_drops_whole_oldest_turns_until_enough_is_gone() -> None:
    history = conversations.normalise_messages(_turn(1) + _turn(2) + _turn(3))
    one_turn = conversations.estimate_tokens(history[:4])

    kept = conversations.trim_history(history, one_turn)

    assert kept == tuple(history[4:])
    assert kept[0]["content"].startswith("question 2")
    assert conversations.trim_history(history, one_turn + 1) == tuple(history[8:])
    assert conversations.trim_history(history, 10**9) == ()
    assert conversations.trim_history(history, None) == ()
