"""Tool calls are checked before anything goes out: the tool must exist and the arguments must be
a JSON object valid against its schema; the error says what is wrong (it goes to the model)."""

from __future__ import annotations

import pytest

from pilothouse.runtime import config, errors, tools

WEATHER = config.ToolConfig(
    name="weather_api",
    url="http://tools.example/weather",
    method="GET",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
)


def test_valid_arguments_are_returned_parsed() -> None:
    assert tools.validate_arguments(WEATHER, '{"city": "Tokyo", "days": 3}') == {
        "city": "Tokyo",
        "days": 3,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('{"city": ', "not valid JSON"),
        ('["Tokyo"]', "must be a JSON object, got list"),
        ('"Tokyo"', "must be a JSON object, got str"),
        ("{}", "'city' is a required property"),
        ('{"city": 5}', "city: 5 is not of type 'string'"),
        ('{"city": "Tokyo", "days": 9}', "days: 9 is greater than the maximum of 7"),
        ('{"city": "Tokyo", "units": "F"}', "Additional properties are not allowed"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(arguments: str, message: str) -> None:
    with pytest.raises(errors.ToolArgumentsInvalid, match="weather_api") as info:
        tools.validate_arguments(WEATHER, arguments)
    assert message in str(info.value)
    assert info.value.reason == "invalid_arguments"


def test_every_problem_is_listed() -> None:
    with pytest.raises(errors.ToolArgumentsInvalid) as info:
        tools.validate_arguments(WEATHER, '{"city": 1, "days": 0}')
    assert "city: 1 is not of type 'string'" in str(info.value)
    assert "days: 0 is less than the minimum of 1" in str(info.value)


def test_empty_arguments_mean_an_empty_object() -> None:
    no_args = config.ToolConfig(name="ping", url="http://tools.example/ping")
    assert tools.validate_arguments(no_args, "") == {}
    with pytest.raises(errors.ToolArgumentsInvalid, match="'city' is a required property"):
        tools.validate_arguments(WEATHER, "  ")


async def test_an_unknown_tool_names_the_available_ones() -> None:
    box = tools.Toolbox([WEATHER])
    try:
        with pytest.raises(errors.UnknownTool, match=r"'send_email'.*available tools: weather_api"):
            box.prepare("call_1", "send_email", "{}")
        prepared = box.prepare("call_2", "weather_api", '{"city": "Oslo"}')
        assert prepared.arguments == {"city": "Oslo"}
        assert prepared.call_id == "call_2"
    finally:
        await box.aclose()


async def test_definitions_offer_each_tool_to_the_model() -> None:
    box = tools.Toolbox([WEATHER])
    try:
        assert box.definitions == [
            {
                "type": "function",
                "function": {
                    "name": "weather_api",
                    "description": "",
                    "parameters": WEATHER.parameters,
                },
            }
        ]
    finally:
        await box.aclose()
