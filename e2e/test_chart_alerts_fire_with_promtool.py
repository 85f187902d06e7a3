"""The chart's alerts pass Prometheus's own checks and fire when they should, first time too.

``promtool`` (built from the pinned Prometheus Go module) lints the rendered PrometheusRule
(``check rules --lint=all``) and runs the rule unit tests of e2e/chart_alerts_test.yaml
(``test rules``): every alert fires on a plausible series, including the first event of a
fresh pod whose counters start at 0, and stays silent on a healthy one. The cases must cover
every alert the chart renders, and an alert broken on purpose must make them fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import helm_chart
import pytest
import yaml
from cluster.promtool import Promtool

RULE_TESTS = Path(__file__).resolve().parent / "chart_alerts_test.yaml"
VALUES = helm_chart.CHART_DIR / "ci" / "standby-monitoring-values.yaml"
CHECKED_ANNOTATIONS = {"summary"}  # promtool compares annotations exactly; runbooks are prose


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The rule groups of the chart's PrometheusRule, every alert enabled."""
    helm = helm_chart.helm(tmp_path_factory.mktemp("helm"))
    rule = helm_chart.one(helm.template(values=[VALUES]), "PrometheusRule")
    found: list[dict[str, Any]] = rule["spec"]["groups"]
    return found


def alerts(groups: list[dict[str, Any]]) -> set[str]:
    return {r["alert"] for g in groups for r in g["rules"]}


def for_unit_tests(groups: list[dict[str, Any]]) -> dict[str, Any]:
    rules = [
        {
            **r,
            "annotations": {k: v for k, v in r["annotations"].items() if k in CHECKED_ANNOTATIONS},
        }
        for g in groups
        for r in g["rules"]
    ]
    return {"groups": [{"name": "pilothouse", "rules": rules}]}


def run_unit_tests(promtool: Promtool, rules: dict[str, Any], where: Path) -> Any:
    where.mkdir(parents=True, exist_ok=True)
    (where / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(RULE_TESTS, where / RULE_TESTS.name)
    return promtool.test_rules(where / RULE_TESTS.name)


def test_rendered_rules_pass_promtool_lint(
    promtool: Promtool, groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))

    proc = promtool.check_rules(rules)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts(groups))} rules found" in proc.stdout + proc.stderr


def test_every_alert_fires_and_stays_silent_as_its_unit_tests_say(
    promtool: Promtool, groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    proc = run_unit_tests(promtool, for_unit_tests(groups), tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_unit_tests_cover_every_alert_firing_and_silent(groups: list[dict[str, Any]]) -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])

    assert len(alerts(groups)) == 8
    assert fires == alerts(groups)
    assert silent == alerts(groups)


@pytest.mark.parametrize(
    "alert",
    [
        "PilothouseQueueBacklogGrowing",
        "PilothouseCircuitBreakerOpen",
        "PilothouseHighErrorRate",
        "PilothouseCostBudgetNearlySpent",
        "PilothouseDeadLetters",
        "PilothouseAuditSpooling",
        "PilothouseOperatorReconcileErrors",
        "PilothouseOperatorDown",
    ],
)
def test_an_alert_that_never_fires_fails_its_unit_tests(
    promtool: Promtool, groups: list[dict[str, Any]], tmp_path: Path, alert: str
) -> None:
    rules = for_unit_tests(groups)
    (broken,) = [r for r in rules["groups"][0]["rules"] if r["alert"] == alert]
    broken["expr"] = "vector(1) == 0"

    proc = run_unit_tests(promtool, rules, tmp_path)

    assert proc.returncode != 0
    assert f"alertname: {alert}" in proc.stdout + proc.stderr
