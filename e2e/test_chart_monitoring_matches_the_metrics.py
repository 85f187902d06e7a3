"""The chart's alerts and dashboard query metrics and labels the code really exports.

Metric names and labels drift as the runtime evolves; an alert on a renamed metric never fires
and nobody notices. So every ``pilothouse_*`` name in the PrometheusRule and the Grafana
dashboard must be a series the runtime (``pilothouse.runtime.metrics``) or the operator
(``pilothouse.operator.metrics``) exposes, every label they group or filter by must be one of
those metrics' labels or a label Prometheus adds to every scraped series, and label values the
alerts match on must be values the code writes. Rendering only: no cluster needed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import helm_chart
import pytest
from prometheus_client import Counter, Gauge, Histogram

from pilothouse.operator import metrics as operator_metrics
from pilothouse.runtime import metrics as runtime_metrics
from pilothouse.runtime import requests

# Labels Prometheus (and the Prometheus Operator's ServiceMonitor) put on every scraped series.
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "endpoint", "container"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$agent": ".*"}
REQUIRED_ALERTS = {
    "PilothouseQueueBacklogGrowing",
    "PilothouseCircuitBreakerOpen",
    "PilothouseHighErrorRate",
    "PilothouseCostBudgetNearlySpent",
}
_METRIC = re.compile(r"\bpilothouse_[a-z0-9_]+\b")
_UP = re.compile(r"\bup\{")  # Prometheus' own series per target: only target labels
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")
_LABEL_MATCH = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")


def exported() -> dict[str, set[str]]:
    """Every series name the code exposes, with the labels it carries."""
    series: dict[str, set[str]] = {}
    objects = [getattr(runtime_metrics, n) for n in dir(runtime_metrics)]
    objects += [getattr(operator_metrics, n) for n in dir(operator_metrics)]
    for obj in objects:
        labels = set(getattr(obj, "_labelnames", ()))
        name = getattr(obj, "_name", "")
        if isinstance(obj, Counter):
            series[f"{name}_total"] = labels
        elif isinstance(obj, Gauge):
            series[name] = labels
        elif isinstance(obj, Histogram):
            for suffix in ("_sum", "_count"):
                series[name + suffix] = labels
            series[name + "_bucket"] = labels | {"le"}
    return series


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[helm_chart.Doc]:
    helm = helm_chart.helm(tmp_path_factory.mktemp("helm"))
    return helm.template(
        values=[helm_chart.CHART_DIR / "ci" / "standby-monitoring-values.yaml"],
    )


def alert_rules(docs: list[helm_chart.Doc]) -> list[dict[str, Any]]:
    rule = helm_chart.one(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard(docs: list[helm_chart.Doc]) -> dict[str, Any]:
    configmap = helm_chart.one(docs, "ConfigMap", "pilothouse-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    board: dict[str, Any] = json.loads(configmap["data"]["pilothouse.json"])
    return board


def expressions(docs: list[helm_chart.Doc]) -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and dashboard query, Grafana variables filled in."""
    out = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules(docs)]
    for panel in dashboard(docs)["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((f"panel {panel['title']!r}", expr))
    return out


def test_every_queried_metric_is_exported(rendered: list[helm_chart.Doc]) -> None:
    series = exported()
    queries = expressions(rendered)

    assert len(queries) > 30
    for where, expr in queries:
        names = set(_METRIC.findall(expr))
        assert names or _UP.search(expr), f"{where}: queries no Pilothouse metric: {expr}"
        unknown = names - series.keys()
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the code"


def test_every_grouping_and_matched_label_exists(rendered: list[helm_chart.Doc]) -> None:
    series = exported()

    for where, expr in expressions(rendered):
        allowed = TARGET_LABELS.union(*(series[n] for n in _METRIC.findall(expr)))
        used = {label.strip() for group in _BY.findall(expr) for label in group.split(",")}
        used |= {m[0] for block in _MATCHER.findall(expr) for m in _LABEL_MATCH.findall(block)}
        used.discard("")
        assert used <= allowed, f"{where}: labels {sorted(used - allowed)} do not exist: {expr}"


def test_matched_request_statuses_are_ones_the_runtime_writes(
    rendered: list[helm_chart.Doc],
) -> None:
    statuses = {s.value for s in requests.ResultStatus}

    for where, expr in expressions(rendered):
        for block in _MATCHER.findall(expr):
            for label, op, value in _LABEL_MATCH.findall(block):
                if label == "status" and op == "=":
                    assert value in statuses, f"{where}: status {value!r} is never written"


def test_alerts_carry_severity_summary_and_runbook(rendered: list[helm_chart.Doc]) -> None:
    rules = alert_rules(rendered)

    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook", "runbook_url"} <= annotations.keys()
        assert annotations["runbook"].startswith("1. "), rule["alert"]
        assert annotations["runbook_url"].startswith("https://runbooks.example.com/pilothouse/")


def test_dashboard_panels_have_unique_ids_and_queries(rendered: list[helm_chart.Doc]) -> None:
    panels = dashboard(rendered)["panels"]

    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_cost_alert_only_with_a_budget(tmp_path_factory: pytest.TempPathFactory) -> None:
    helm = helm_chart.helm(tmp_path_factory.mktemp("helm"))

    docs = helm.template(sets=["monitoring.prometheusRule.enabled=true"])

    names = {r["alert"] for r in alert_rules(docs)}
    assert "PilothouseCostBudgetNearlySpent" not in names
    assert "PilothouseOperatorDown" not in names  # nothing scrapes the operator
