"""The chart's alerts and dashboard query metrics and labels the code really exports.

Metric names and labels drift as the runtime evolves; an alert on a renamed metric never fires
and nobody notices. So every ``pilothouse_*`` name in the PrometheusRule and the Grafana
dashboard must be a series the runtime (``pilothouse.runtime.metrics``) or the operator
(``pilothouse.operator.metrics``) exposes, every label they group or filter by must be one of
those metrics' labels or a label Prometheus adds to every scraped series, and label values the
alerts match on must be values the code writes. Every runtime series carries its agent and
namespace as target labels (the agents' ServiceMonitor relabels them from the pod label the
operator sets), so every dashboard query of an agent's series filters by the dashboard's
``$agent`` and ``$namespace``. Rendering only: no cluster needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_chart
import pytest
import yaml
from cluster.promtool import Promtool
from prometheus_client import Counter, Gauge, Histogram

from pilothouse.operator import labels as operator_labels
from pilothouse.operator import metrics as operator_metrics
from pilothouse.runtime import metrics as runtime_metrics
from pilothouse.runtime import requests

# Labels Prometheus (and the Prometheus Operator's ServiceMonitor) put on every scraped series.
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "endpoint", "container"}
# ...and the agents' ServiceMonitor on every runtime series, from the pod's label.
RUNTIME_TARGET_LABELS = {"agent"}
AGENT_FILTER = re.compile(r'\bagent=~"\$agent"')
NAMESPACE_FILTER = re.compile(r'\bnamespace=~"\$namespace"')
_SELECTOR = re.compile(r"\b(pilothouse_[a-z0-9_]+)(\{[^}]*\})?")
GOLDEN_CHILDREN = (
    helm_chart.REPO_ROOT / "tests" / "unit" / "golden" / "operator_customer_support.yaml"
)
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


def exported(*modules: Any) -> dict[str, set[str]]:
    """Every series name the code exposes, with the labels it carries."""
    series: dict[str, set[str]] = {}
    objects = [
        getattr(m, n) for m in modules or (runtime_metrics, operator_metrics) for n in dir(m)
    ]
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


def panel_queries(docs: list[helm_chart.Doc]) -> list[tuple[str, str]]:
    """(panel title, PromQL as written, Grafana variables unfilled) of every dashboard query."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard(docs)["panels"]
        for target in panel.get("targets", [])
    ]


def expressions(docs: list[helm_chart.Doc]) -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and dashboard query, Grafana variables filled in."""
    out = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules(docs)]
    for title, expr in panel_queries(docs):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        out.append((f"panel {title!r}", expr))
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

    runtime = exported(runtime_metrics)
    for where, expr in expressions(rendered):
        names = _METRIC.findall(expr)
        allowed = TARGET_LABELS.union(*(series[n] for n in names))
        if any(n in runtime for n in names):
            allowed |= RUNTIME_TARGET_LABELS
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


def test_every_agent_series_on_the_dashboard_is_filtered_by_agent_and_namespace(
    rendered: list[helm_chart.Doc],
) -> None:
    runtime = exported(runtime_metrics)
    operator = exported(operator_metrics)
    operator_wide = {name for name, labels in operator.items() if "agent" not in labels}
    # Operator-wide series (reconciles of agents and policies alike) have no agent to filter by.
    operator_row = panels_of_row(dashboard(rendered), "Operator")

    checked = 0
    for title, expr in panel_queries(rendered):
        for match in _SELECTOR.finditer(expr):
            name, selector = match.group(1), match.group(2) or ""
            if name in operator_wide:
                assert title in operator_row, f"{title!r}: {name} has no agent label"
                continue
            assert name in runtime or name in operator, f"{title!r}: {name} is not exported"
            assert AGENT_FILTER.search(selector), f"{title!r}: {name} ignores $agent: {expr}"
            assert NAMESPACE_FILTER.search(selector), f"{title!r}: {name} ignores $namespace"
            checked += 1

    assert checked >= 20


def panels_of_row(board: dict[str, Any], row_title: str) -> set[str]:
    """Titles of the panels under the row ``row_title`` (rows are flat in the panel list)."""
    titles: set[str] = set()
    current = None
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
        elif current == row_title:
            titles.add(panel["title"])
    return titles


def test_runtime_series_get_the_agent_from_the_label_the_operator_puts_on_its_pods(
    rendered: list[helm_chart.Doc],
) -> None:
    monitor = helm_chart.one(rendered, "ServiceMonitor", "pilothouse-agents")
    (endpoint,) = monitor["spec"]["endpoints"]
    pod_label = re.sub(r"[^a-zA-Z0-9_]", "_", operator_labels.AGENT_KEY)

    relabelings = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}

    assert relabelings["agent"] == [f"__meta_kubernetes_pod_label_{pod_label}"]
    assert relabelings["namespace"] == ["__meta_kubernetes_namespace"]
    assert {"action": "labeldrop", "regex": "exported_agent"} in endpoint["metricRelabelings"]
    # The operator's pods carry that label (the builders' golden output, pinned by unit tests).
    children = list(yaml.safe_load_all(GOLDEN_CHILDREN.read_text()))
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[operator_labels.AGENT_KEY] == deployment["metadata"]["name"]


def test_every_dashboard_query_parses_with_prometheus_own_parser(
    rendered: list[helm_chart.Doc], promtool: Promtool, tmp_path: Path
) -> None:
    queries = [expr for where, expr in expressions(rendered) if where.startswith("panel ")]
    rules = [
        {"record": f"pilothouse:dashboard_query_{i}", "expr": q} for i, q in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    proc = promtool.run("check", "rules", "--lint=none", str(path))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(queries)} rules found" in proc.stdout + proc.stderr
