"""Reply templates and the arithmetic of scenario rules (pure)."""

from __future__ import annotations

import pytest

from pilothouse.runtime.mockllm import templates


def render(source: str, **variables: str) -> str:
    return templates.compile_template(source).render(templates.Context(variables))


def test_placeholders_are_replaced_by_variables() -> None:
    assert (
        render("Hello {name}, it is {day}.", name="Ada", day="Monday") == "Hello Ada, it is Monday."
    )


def test_text_without_placeholders_is_kept_verbatim() -> None:
    assert render('{"raw": "json"} and { spaced }') == '{"raw": "json"} and { spaced }'


def test_double_braces_are_literal_braces() -> None:
    assert render("{{name}} is {name}", name="x") == "{name} is x"


def test_json_fields_of_a_variable_are_reachable_by_path() -> None:
    result = '{"temperature": 22.0, "conditions": "sunny", "days": [{"high": 25}], "ok": true}'
    assert render("{r.temperature} {r.conditions}", r=result) == "22 sunny"
    assert render("{r.days.0.high}", r=result) == "25"
    assert render("{r.ok}", r=result) == "true"
    assert render("{r.days}", r=result) == '[{"high":25}]'


def test_missing_fields_render_empty_or_the_fallback() -> None:
    assert render("[{r.nope}]", r='{"a": 1}') == "[]"
    assert render("[{r.nope|n/a}]", r='{"a": 1}') == "[n/a]"
    assert render("[{r.a|n/a}]", r="not json") == "[n/a]"
    assert render("[{missing|none}]") == "[none]"
    assert render("[{empty|none}]", empty="") == "[none]"


def test_variables_lists_root_names_only() -> None:
    template = templates.compile_template("{a} {b.c.d} {a|x} {{literal}}")
    assert template.variables == frozenset({"a", "b"})


def test_arguments_render_string_values_at_any_depth_and_keep_other_types() -> None:
    arguments = templates.compile_arguments(
        {"city": "{city}", "units": "metric", "days": 3, "nested": {"tags": ["{city}", 1]}}
    )
    assert arguments.variables == frozenset({"city"})
    rendered = arguments.render(templates.Context({"city": "Oslo"}))
    assert rendered == {
        "city": "Oslo",
        "units": "metric",
        "days": 3,
        "nested": {"tags": ["Oslo", 1]},
    }


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+2", "4"),
        ("2 + 2", "4"),
        ("7 - 10", "-3"),
        ("6 x 7", "42"),
        ("6 * 7", "42"),
        ("6 times 7", "42"),
        ("6 \u00d7 7", "42"),
        ("10 / 4", "2.5"),
        ("10 divided by 4", "2.5"),
        ("3 plus 4 minus 2", "5"),
        ("1 / 3", "0.333333"),
        ("0.1 + 0.2", "0.3"),
        ("(1 + 2) * 4", "12"),
        ("-3 * -3", "9"),
        ("12 / 4 =", "3"),
    ],
)
def test_arithmetic_evaluates_simple_expressions(expression: str, value: str) -> None:
    assert templates.evaluate_arithmetic(expression) == value


@pytest.mark.parametrize(
    "expression", ["", "5 / 0", "2 +", "(1 + 2", "two plus two", "2 ** 3", "1" * 40 + " + 1"]
)
def test_arithmetic_is_undefined_for_what_it_cannot_compute(expression: str) -> None:
    assert templates.evaluate_arithmetic(expression) == templates.UNDEFINED
