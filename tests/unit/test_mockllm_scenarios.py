"""Scenario rules: loading (and its errors), matching, and the built-in scenario (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from pilothouse.runtime.mockllm import completions, errors, scenarios


def scenario(*rules: dict[str, Any], **top: Any) -> scenarios.Scenario:
    return scenarios.from_data({"name": "test", "rules": list(rules), **top}, source="test.yaml")


def conv(message: str, **kwargs: Any) -> scenarios.Conversation:
    return scenarios.Conversation(model=kwargs.pop("model", "m"), message=message, **kwargs)


def request(*messages: dict[str, Any], tools: tuple[str, ...] = (), **extra: Any) -> Any:
    body: dict[str, Any] = {"model": "m", "messages": list(messages), **extra}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": t}} for t in tools]
    return completions.parse_chat_request(orjson.dumps(body))


# --- matching ---------------------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    s = scenario(
        {"name": "a", "match": "hello", "content": "first"},
        {"name": "b", "match": "hello", "content": "second"},
    )
    reply = scenarios.respond(s, conv("well HELLO there"))
    assert (reply.content, reply.rule) == ("first", "a")


def test_named_groups_become_template_variables() -> None:
    s = scenario({"match": r"my name is (?P<name>\w+)", "content": "Hi {name}!"})
    assert scenarios.respond(s, conv("My name is Ada")).content == "Hi Ada!"


def test_no_match_falls_back_to_an_echo() -> None:
    s = scenario({"match": "never", "content": "x"})
    reply = scenarios.respond(s, conv("something else"))
    assert (reply.content, reply.rule) == ("Echo: something else", "default")


def test_no_match_after_a_tool_result_reports_the_result() -> None:
    reply = scenarios.respond(scenario(), conv("q", tool_name="lookup", tool_result='{"x": 1}'))
    assert reply.content == 'The lookup tool returned: {"x": 1}'
    assert not reply.tool_calls


def test_history_regex_searches_earlier_user_messages_most_recent_first() -> None:
    s = scenario(
        {"match": "^yes", "history": r"order (?P<order>\d+)", "content": "ok {order}"},
    )
    assert scenarios.respond(s, conv("yes", earlier=("order 2", "order 1"))).content == "ok 2"
    assert scenarios.respond(s, conv("yes", earlier=("nothing",))).rule == "default"
    # The latest message does not count as history.
    assert scenarios.respond(s, conv("yes order 3")).rule == "default"


def test_match_groups_win_over_history_groups() -> None:
    s = scenario({"match": r"(?P<n>\d+)", "history": r"(?P<n>\d+) (?P<m>\d+)", "content": "{n}{m}"})
    assert scenarios.respond(s, conv("7", earlier=("1 2",))).content == "72"


def test_rules_without_after_tool_skip_tool_results_so_a_tool_is_not_called_twice() -> None:
    s = scenario(
        {"match": "weather", "tool_calls": [{"name": "w"}], "require_offered": False},
        {"after_tool": "w", "content": "done: {tool_result}"},
    )
    first = scenarios.respond(s, conv("weather?"))
    assert [c.name for c in first.tool_calls] == ["w"]
    second = scenarios.respond(s, conv("weather?", tool_name="w", tool_result="sunny"))
    assert second.content == "done: sunny"


def test_after_tool_names_the_tool_or_any_tool() -> None:
    s = scenario(
        {"name": "specific", "after_tool": "a", "content": "a"},
        {"name": "any", "after_tool": "*", "content": "any {tool_name}"},
    )
    assert scenarios.respond(s, conv("q", tool_name="a", tool_result="")).rule == "specific"
    assert scenarios.respond(s, conv("q", tool_name="b", tool_result="")).content == "any b"
    assert scenarios.respond(s, conv("q")).rule == "default"


def test_tool_calling_rule_fires_only_when_its_tool_is_offered() -> None:
    s = scenario(
        {"name": "call", "match": "x", "tool_calls": [{"name": "t"}]},
        {"name": "text", "match": "x", "content": "no tool"},
    )
    assert scenarios.respond(s, conv("x", offered_tools=frozenset({"t"}))).rule == "call"
    assert scenarios.respond(s, conv("x", offered_tools=frozenset({"other"}))).rule == "text"
    assert scenarios.respond(s, conv("x")).rule == "text"


def test_require_offered_false_calls_the_tool_anyway() -> None:
    s = scenario({"match": "x", "tool_calls": [{"name": "t"}], "require_offered": False})
    assert scenarios.respond(s, conv("x")).tool_calls[0].name == "t"


def test_model_condition_uses_fnmatch_patterns() -> None:
    s = scenario(
        {"name": "gpt", "model": ["gpt-4o*", "exact"], "content": "a"},
        {"name": "other", "content": "b"},
    )
    assert scenarios.respond(s, conv("q", model="gpt-4o-mini")).rule == "gpt"
    assert scenarios.respond(s, conv("q", model="exact")).rule == "gpt"
    assert scenarios.respond(s, conv("q", model="claude")).rule == "other"


def test_tool_call_arguments_are_rendered_json_with_caller_ids() -> None:
    s = scenario(
        {
            "match": r"(?P<city>\w+)$",
            "tool_calls": [
                {"name": "a", "arguments": {"city": "{city}", "days": 2}},
                {"name": "b"},
            ],
            "require_offered": False,
        }
    )
    reply = scenarios.respond(s, conv("weather in Oslo"), call_id_prefix="call_x")
    assert [c.id for c in reply.tool_calls] == ["call_x_0", "call_x_1"]
    assert json.loads(reply.tool_calls[0].arguments) == {"city": "Oslo", "days": 2}
    assert json.loads(reply.tool_calls[1].arguments) == {}


def test_evaluate_binds_arithmetic_and_skips_the_rule_when_undefined() -> None:
    s = scenario(
        {"match": r"what is (?P<e>.+)\?", "evaluate": {"r": "{e}"}, "content": "= {r}"},
        {"name": "fallback", "content": "cannot"},
    )
    assert scenarios.respond(s, conv("What is 6 * 7?")).content == "= 42"
    assert scenarios.respond(s, conv("What is 1 / 0?")).rule == "fallback"


def test_latency_ms_is_carried_on_the_reply() -> None:
    s = scenario({"content": "x", "latency_ms": 250})
    assert scenarios.respond(s, conv("q")).latency_s == pytest.approx(0.25)


def test_conversation_of_a_request_finds_the_tool_by_its_call_id() -> None:
    req = request(
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
        tools=("t",),
        tool_choice="auto",
    )
    c = scenarios.Conversation.of(req)
    assert c.message == "second"
    assert c.earlier == ("first",)
    assert (c.tool_name, c.tool_result) == ("t", "result")
    assert c.offered_tools == frozenset({"t"})


def test_tool_choice_none_offers_no_tool() -> None:
    req = request({"role": "user", "content": "x"}, tools=("t",), tool_choice="none")
    assert scenarios.Conversation.of(req).offered_tools == frozenset()


# --- loading errors ---------------------------------------------------------------------------


def load_error(data: object) -> str:
    with pytest.raises(errors.ScenarioError) as caught:
        scenarios.from_data(data, source="flows.yaml")
    return str(caught.value)


def test_a_bad_regex_names_the_file_the_rule_and_the_key() -> None:
    message = load_error(
        {"rules": [{"content": "ok"}, {"name": "broken", "match": "(", "content": "x"}]}
    )
    assert "flows.yaml" in message
    assert "rules[1] ('broken')" in message
    assert "'match'" in message


def test_an_unknown_key_is_rejected_with_the_rule_index() -> None:
    message = load_error({"rules": [{"content": "a"}, {"contnet": "typo"}]})
    assert "flows.yaml: rules[1]: contnet" in message
    assert "Extra inputs are not permitted" in message


def test_an_unknown_top_level_key_is_rejected() -> None:
    assert "rulez" in load_error({"rulez": []})


def test_a_rule_needs_content_or_tool_calls() -> None:
    message = load_error({"rules": [{"name": "empty", "match": "x"}]})
    assert "rules[0] ('empty')" in message
    assert "'content' or 'tool_calls'" in message


def test_templates_may_only_use_known_variables() -> None:
    message = load_error({"rules": [{"match": "(?P<a>x)", "content": "{a} {b}"}]})
    assert "unknown variable(s) ['b']" in message
    message = load_error({"rules": [{"tool_calls": [{"name": "t", "arguments": {"x": "{nope}"}}]}]})
    assert "tool_calls[0].arguments" in message


def test_groups_may_not_shadow_built_in_variables() -> None:
    assert "shadow" in load_error({"rules": [{"match": "(?P<message>x)", "content": "y"}]})


def test_wrong_types_are_rejected() -> None:
    assert "latency_ms" in load_error({"rules": [{"content": "x", "latency_ms": -1}]})
    assert "rules[0]: content" in load_error({"rules": [{"content": 4}]})
    assert "mapping" in load_error(["not", "a", "mapping"])


def test_yaml_syntax_errors_name_the_line() -> None:
    with pytest.raises(errors.ScenarioError, match=r"x\.yaml: not valid YAML \(line 2"):
        scenarios.load_text("rules:\n  - content: 'a' b: c\n", source="x.yaml")


def test_load_file_reads_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"rules": [{"content": "from json"}]}))
    (tmp_path / "s.yaml").write_text("rules:\n  - content: from yaml\n")
    assert (
        scenarios.respond(scenarios.load_file(tmp_path / "s.json"), conv("q")).content
        == "from json"
    )
    assert (
        scenarios.respond(scenarios.load_file(tmp_path / "s.yaml"), conv("q")).content
        == "from yaml"
    )
    with pytest.raises(errors.ScenarioError, match=r"missing\.yaml: cannot read"):
        scenarios.load_file(tmp_path / "missing.yaml")


# --- the built-in scenario --------------------------------------------------------------------

DEFAULT = scenarios.load_default()


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("What is 2+2?", "4"),
        ("what's 6 times 7", "42"),
        ("Calculate (1 + 2) * 4", "12"),
        ("What is 10 / 4?", "2.5"),
    ],
)
def test_default_scenario_does_arithmetic(question: str, answer: str) -> None:
    reply = scenarios.respond(DEFAULT, conv(question))
    assert reply.rule == "arithmetic"
    assert f"The answer is {answer}." in (reply.content or "")


@pytest.mark.parametrize("city", ["Tokyo", "New York", "Paris"])
def test_default_scenario_calls_the_weather_tool_for_any_city(city: str) -> None:
    reply = scenarios.respond(
        DEFAULT, conv(f"What's the weather in {city}?", offered_tools=frozenset({"weather_api"}))
    )
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("weather_api", {"city": city})
    ]


def test_default_scenario_answers_the_weather_from_the_tool_result() -> None:
    result = '{"temperature": 22, "conditions": "sunny"}'
    reply = scenarios.respond(
        DEFAULT,
        conv(
            "What's the weather in Tokyo?",
            tool_name="weather_api",
            tool_result=result,
            offered_tools=frozenset({"weather_api"}),
        ),
    )
    assert reply.tool_calls == ()
    assert "Tokyo" in (reply.content or "")
    assert "22" in (reply.content or "")
    assert "sunny" in (reply.content or "")


def test_default_scenario_without_the_weather_tool_answers_in_text() -> None:
    reply = scenarios.respond(DEFAULT, conv("What's the weather in Tokyo?"))
    assert reply.tool_calls == ()
    assert "Tokyo" in (reply.content or "")


def test_default_scenario_runs_the_return_flow() -> None:
    offered = frozenset({"initiate_return"})
    first = scenarios.respond(DEFAULT, conv("I want to return my order", offered_tools=offered))
    assert "order number" in (first.content or "")
    second = scenarios.respond(
        DEFAULT,
        conv(
            "The order number is 12345",
            earlier=("I want to return my order",),
            offered_tools=offered,
        ),
    )
    assert "12345" in (second.content or "")
    assert "confirm" in (second.content or "").lower()
    earlier = ("The order number is 12345", "I want to return my order")
    third = scenarios.respond(
        DEFAULT, conv("Yes, that's correct", earlier=earlier, offered_tools=offered)
    )
    assert [(c.name, json.loads(c.arguments)) for c in third.tool_calls] == [
        ("initiate_return", {"order_id": "12345"})
    ]
    fourth = scenarios.respond(
        DEFAULT,
        conv(
            "Yes, that's correct",
            earlier=earlier,
            offered_tools=offered,
            tool_name="initiate_return",
            tool_result='{"status": "initiated"}',
        ),
    )
    assert fourth.tool_calls == ()
    assert "12345" in (fourth.content or "")
    assert "initiated" in (fourth.content or "")


def test_default_scenario_echoes_anything_else() -> None:
    assert scenarios.respond(DEFAULT, conv("blorp")).content == "Echo: blorp"
