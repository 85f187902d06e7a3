"""``pilothouse eval`` as a user runs it (the real command line, in a child process): the shipped
dataset passes on the scripted model and exits 0; a model that never calls tools scores lower,
the failing examples are named, the exit status is 1; the baseline comparison lists exactly the
examples that changed; JUnit XML reads back; malformed datasets exit 2 naming file and line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pilothouse.runtime.cli import main as cli_main
from pilothouse.runtime.evaluation import datasets

pytest_plugins = ["eval_support"]
pytestmark = pytest.mark.integration

EVAL_SHIPPED = ("eval", "customer_support_v1", "--config")
REPORT_JSON = ("--report", "json", "--output")
TOOL_EXAMPLES = sorted(
    e.id
    for e in datasets.load_dataset("customer_support_v1")
    if any(x.kind == "tool_used" for x in e.expectations)
)


@pytest.fixture(scope="module")
def baseline(
    tmp_path_factory: pytest.TempPathFactory, support_config: Path, redis_url: str, cli: Any
) -> Path:
    """A JSON report of the shipped dataset on the well-behaved model."""
    path = tmp_path_factory.mktemp("reports") / "baseline.json"
    done = cli(
        ["eval", "customer_support_v1", "--config", str(support_config), *REPORT_JSON, str(path)],
        env={"PILOTHOUSE_REDIS_URL": redis_url},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "customer_support_v1: score 1.000, 30/30 passed" in done.stdout
    assert "PASSED (threshold 0.80)" in done.stdout
    return path


def test_the_shipped_dataset_passes_the_gate_on_the_scripted_model(baseline: Path) -> None:
    report = json.loads(baseline.read_text())
    assert report["summary"]["score"] > 0.8
    assert report["summary"]["passed"] == report["summary"]["examples"] == 30
    assert report["threshold"] == 0.8


def test_a_model_that_never_calls_tools_fails_the_gate_and_names_the_failures(
    forgetful_config: Path, redis_url: str, cli: Any
) -> None:
    done = cli(
        ["eval", "customer_support_v1", "--config", str(forgetful_config), "--report", "junit"],
        env={"PILOTHOUSE_REDIS_URL": redis_url},
    )
    assert done.returncode == 1, done.stderr
    table = done.stderr
    assert "FAILED (threshold 0.80)" in table
    failing = sorted(
        line.split()[2] for line in table.splitlines() if line.startswith(("FAIL ", "ERROR "))
    )
    assert failing == TOOL_EXAMPLES
    assert "weather_api was not called (tools called: none)" in table

    suite = ET.fromstring(done.stdout).find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 30
    failed = sorted(c.get("name") or "" for c in cases if c.find("failure") is not None)
    assert failed == TOOL_EXAMPLES
    assert suite.get("failures") == str(len(TOOL_EXAMPLES))
    assert suite.get("errors") == "0"
    tokyo = next(c for c in cases if c.get("name") == "weather-tokyo").find("failure")
    assert tokyo is not None
    assert "tool_used: weather_api was not called" in (tokyo.get("message") or "")
    score = next(p for p in suite.iter("property") if p.get("name") == "score").get("value")
    assert float(score or 1) < 0.8


def test_the_baseline_comparison_lists_exactly_the_examples_that_changed(
    baseline: Path,
    support_config: Path,
    forgetful_config: Path,
    redis_url: str,
    tmp_path: Path,
    cli: Any,
) -> None:
    current = tmp_path / "current.json"
    args = ["eval", "customer_support_v1", "--config", str(forgetful_config)]
    args += ["--baseline", str(baseline), "--threshold", "0", "--report", "json"]
    done = cli(
        [*args, "--output", str(current), "--fail-on-regression"],
        env={"PILOTHOUSE_REDIS_URL": redis_url},
    )
    assert done.returncode == 1, done.stderr
    comparison = json.loads(current.read_text())["comparison"]
    assert sorted(comparison["regressed"]) == TOOL_EXAMPLES
    assert comparison["improved"] == []
    assert comparison["added"] == comparison["removed"] == []
    assert comparison["score_delta"] < 0
    assert f"regressed: {', '.join(comparison['regressed'])}" in done.stdout
    assert "improved:  none" in done.stdout

    # Back on the good model, against the bad run as baseline: exactly those improve.
    again = cli(
        [*EVAL_SHIPPED, str(support_config), "--baseline", str(current), "--fail-on-regression"],
        env={"PILOTHOUSE_REDIS_URL": redis_url},
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "regressed: none" in again.stdout
    assert f"improved:  {', '.join(comparison['regressed'])}" in again.stdout


def test_a_malformed_dataset_exits_2_naming_the_file_line_and_reason(
    tmp_path: Path, support_config: Path, cli: Any
) -> None:
    lines = [
        json.dumps({"id": f"ex-{n}", "input": "What is 2+2?", "expect": {"contains": "4"}})
        for n in range(16)
    ]
    lines.append('{"id": "ex-17", "input": "hi" "expect": {}}')
    lines.append(json.dumps({"id": "ex-18", "input": "hi", "expect": {"tool_usd": "x"}}))
    dataset = tmp_path / "broken.jsonl"
    dataset.write_text("\n".join(lines) + "\n")
    done = cli(["eval", str(dataset), "--config", str(support_config)])
    assert done.returncode == 2
    assert f"{dataset}:17: invalid JSON: Expecting ',' delimiter" in done.stderr
    assert f"{dataset}:18: example 'ex-18': unknown expectation kind 'tool_usd'" in done.stderr
    assert "did you mean 'tool_used'?" in done.stderr
    assert done.stdout == ""


def test_bad_options_exit_2_with_the_reason(
    tmp_path: Path, support_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = ["eval", "customer_support_v1", "--config", str(support_config)]
    assert cli_main(["eval", "no_such_dataset", "--config", str(support_config)]) == 2
    assert "no_such_dataset: no such dataset file (shipped datasets: customer_support_v1)" in (
        capsys.readouterr().err
    )
    baseline = tmp_path / "b.json"
    baseline.write_text("[]")
    assert cli_main([*shipped, "--baseline", str(baseline)]) == 2
    assert "b.json: not a pilothouse eval JSON report" in capsys.readouterr().err
    assert cli_main(["eval", "customer_support_v1", "--url", "ftp://x"]) == 2
    assert "--url must start with http:// or https://" in capsys.readouterr().err
    assert cli_main([*shipped, "--output", str(tmp_path / "r.json")]) == 2
    assert "--output needs --report" in capsys.readouterr().err
    assert cli_main([*shipped, "--judge-model", "judge"]) == 2
    assert "--judge-endpoint and --judge-model go together" in capsys.readouterr().err
