"""Evaluation datasets load, and malformed ones fail naming the file, the line and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilothouse.runtime import errors
from pilothouse.runtime.evaluation import datasets, expectations


def _line(example: dict[str, object]) -> str:
    return json.dumps(example)


def _good(n: int) -> dict[str, object]:
    return {"id": f"ex-{n}", "input": f"What is {n}+{n}?", "expect": {"contains": str(2 * n)}}


def _write(tmp_path: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_examples_load_with_turns_tags_weights_and_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            _line({**_good(1), "tags": ["math", "math"], "weight": 2}),
            "",
            _line(
                {
                    "id": "flow",
                    "conversation": ["I want to return my order", "12345", "yes"],
                    "expect": {"context": {"return_initiated": True}, "refused": False},
                }
            ),
        ],
    )
    dataset = datasets.load_dataset(path)
    assert dataset.name == "data"
    assert len(dataset.sha256) == 64
    first, flow = dataset.examples
    assert (first.id, first.turns, first.tags, first.weight, first.line) == (
        "ex-1",
        ("What is 1+1?",),
        ("math",),
        2.0,
        1,
    )
    assert not first.is_conversation
    assert flow.is_conversation
    assert flow.line == 3
    assert [e.kind for e in flow.expectations] == ["context", "refused"]
    assert dataset.kinds == {"contains", "context", "refused"}


def test_bad_json_on_line_17_names_the_file_and_line(tmp_path: Path) -> None:
    lines = [_line(_good(n)) for n in range(1, 17)]
    lines.append('{"id": "ex-17", "input": "hi" "expect": {}}')
    path = _write(tmp_path, lines)
    with pytest.raises(errors.UsageError) as caught:
        datasets.load_dataset(path)
    message = str(caught.value)
    assert f"{path}:17: invalid JSON: Expecting ',' delimiter" in message
    assert "1 problem(s)" in message


def test_unknown_expectation_kind_names_the_line_and_suggests_the_right_one(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        [_line(_good(1)), _line({"id": "typo", "input": "x", "expect": {"containz": "4"}})],
    )
    with pytest.raises(errors.UsageError) as caught:
        datasets.load_dataset(path)
    message = str(caught.value)
    assert f"{path}:2: example 'typo': unknown expectation kind 'containz'" in message
    assert "did you mean 'contains'?" in message


@pytest.mark.parametrize(
    ("example", "reason"),
    [
        ({"id": "a", "expect": {"refused": True}}, "needs exactly one of 'input'"),
        (
            {"id": "a", "input": "x", "conversation": ["y"], "expect": {"refused": True}},
            "exactly one",
        ),
        ({"id": "a", "input": "", "expect": {"refused": True}}, "'input' must be a non-empty"),
        ({"id": "a", "conversation": [], "expect": {"refused": True}}, "non-empty list"),
        ({"id": "a", "conversation": ["hi", 3], "expect": {"refused": True}}, "conversation[1]"),
        ({"input": "x", "expect": {"refused": True}}, "'id' must be a non-empty string"),
        ({"id": "a", "input": "x"}, "missing 'expect'"),
        ({"id": "a", "input": "x", "expect": {}}, "'expect' must be a non-empty object"),
        ({"id": "a", "input": "x", "expect": {"refused": "yes"}}, "expect.refused: must be true"),
        ({"id": "a", "input": "x", "expect": {"regex": "("}}, "expect.regex: invalid regex"),
        ({"id": "a", "input": "x", "expect": {"status": "done"}}, "unknown status ['done']"),
        ({"id": "a", "input": "x", "expect": {"refused": True}, "weight": 0}, "'weight' must be"),
        (
            {"id": "a", "input": "x", "expect": {"refused": True}, "weight": 1e308},
            "'weight' must be a number > 0 and <= 1e+06, not 1e+308",
        ),
        ({"id": "a", "input": "x", "expect": {"refused": True}, "tags": "x"}, "'tags' must be"),
        ({"id": "a", "input": "x", "expect": {"refused": True}, "expected": 1}, "unknown key(s)"),
        ([1, 2], "an example must be an object"),
    ],
)
def test_an_invalid_example_is_reported_with_its_reason(
    tmp_path: Path, example: object, reason: str
) -> None:
    path = _write(tmp_path, [_line(_good(1)), json.dumps(example)])
    with pytest.raises(errors.UsageError) as caught:
        datasets.load_dataset(path)
    assert f"{path}:2: " in str(caught.value)
    assert reason in str(caught.value)


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            _line({"id": "a", "input": "x", "expect": {"nope": 1}}),
            "not json",
            _line(_good(3)),
            _line({**_good(3), "id": "a"}),
        ],
    )
    with pytest.raises(errors.UsageError) as caught:
        datasets.load_dataset(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: invalid dataset (3 problem(s))"
    assert [line.split(":")[1] for line in lines[1:]] == ["1", "2", "4"]
    assert "duplicate id (first on line 1)" in lines[3]


def test_yaml_datasets_report_the_line_where_the_example_starts(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(
        "- id: one\n"
        "  input: What is 2+2?\n"
        "  expect: {contains: '4'}\n"
        "- id: two\n"
        "  input: hello\n"
        "  expect:\n"
        "    containz: hi\n",
        encoding="utf-8",
    )
    with pytest.raises(errors.UsageError, match=r"data\.yaml:4: example 'two': unknown"):
        datasets.load_dataset(path)
    path.write_text("- id: one\n  input: What is 2+2?\n  expect: {contains: '4'}\n")
    assert [e.id for e in datasets.load_dataset(path)] == ["one"]


def test_a_yaml_file_that_is_not_a_list_or_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.yml"
    path.write_text("id: one\n")
    with pytest.raises(errors.UsageError, match=r"data\.yml:1: a YAML dataset must be a list"):
        datasets.load_dataset(path)
    path.write_text("- id: [one\n")
    with pytest.raises(errors.UsageError, match=r"data\.yml:\d+: invalid YAML"):
        datasets.load_dataset(path)


def test_empty_missing_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="has no examples"):
        datasets.load_dataset(_write(tmp_path, [""]))
    with pytest.raises(errors.UsageError, match="no such dataset file"):
        datasets.load_dataset(tmp_path / "absent.jsonl")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(_line(_good(1)).encode() + b"\n" + '{"id": "é"}'.encode("latin-1"))
    with pytest.raises(errors.UsageError, match=r"latin1\.jsonl:2: not UTF-8"):
        datasets.load_dataset(path)


def test_tool_expectations_are_compiled_into_matchers() -> None:
    (example,) = datasets.parse_jsonl(
        _line(
            {
                "id": "w",
                "input": "weather in Tokyo?",
                "expect": {
                    "tool_used": [
                        "lookup",
                        {
                            "name": "weather_api",
                            "params": {
                                "city": {"contains": "tok", "ignore_case": True},
                                "units": {"regex": "^c"},
                                "days": 3,
                                "filters": {"equals": {"regex": "literal"}},
                            },
                            "ok": True,
                        },
                    ]
                },
            }
        )
    )
    lookup, weather = example.expectations[0].spec
    assert lookup == expectations.ToolSpec("lookup")
    params = dict(weather.params)
    assert params["city"] == expectations.Contains("tok", True)
    assert isinstance(params["units"], expectations.Regex)
    assert params["days"] == expectations.Equals(3)
    assert params["filters"] == expectations.Equals({"regex": "literal"})
    assert weather.ok is True


def test_the_shipped_customer_support_dataset_loads_by_name() -> None:
    dataset = datasets.load_dataset("customer_support_v1")
    assert dataset.name == "customer_support_v1"
    assert 25 <= len(dataset) <= 40
    tags = {t for e in dataset for t in e.tags}
    assert {"arithmetic", "weather", "returns", "prompt-injection", "harmful", "pii"} <= tags
    flows = [e for e in dataset if e.is_conversation]
    assert any(
        x.kind == "context" and x.raw == {"return_initiated": True}
        for e in flows
        for x in e.expectations
    )
    assert (
        sum(any(x.kind == "refused" and x.raw is True for x in e.expectations) for e in dataset)
        >= 5
    )
    assert "customer_support_v1" in datasets.shipped()
