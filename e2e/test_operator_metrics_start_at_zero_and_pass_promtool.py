"""The operator exposes its known series from the start and its ``/metrics`` passes promtool.

Every reconcile result of both kinds and every autoscaler reason is a series as soon as the
operator serves ``/metrics``, so the first failed reconcile is an increase Prometheus sees.
The scrape, of a fresh operator and of one that reconciled and scaled an agent, passes
``promtool check metrics`` (Prometheus's own parser and linter, built at the pinned version).
"""

from __future__ import annotations

import operator_harness as h
from cluster.launcher import Cluster
from cluster.promtool import Promtool
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.operator import autoscaling, reconciling

AGENT = "metered"


def _series(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _reconciles(text: str, kind: str) -> float:
    return sum(
        value
        for (name, labels), value in _series(text).items()
        if name == "pilothouse_operator_reconciles_total" and ("kind", kind) in labels
    )


def test_known_series_exist_from_the_start_and_metrics_pass_promtool(
    k8s_cluster: Cluster, operator: h.OperatorProcess, namespace: str, promtool: Promtool
) -> None:
    fresh = operator.metrics()
    series = _series(fresh)

    for kind in reconciling.KINDS:
        for result in reconciling.RESULTS:
            key = (
                "pilothouse_operator_reconciles_total",
                frozenset({("kind", kind), ("result", result)}),
            )
            assert key in series, f"{kind}/{result} is not exposed by a fresh operator"
        count = (
            "pilothouse_operator_reconcile_duration_seconds_count",
            frozenset({("kind", kind)}),
        )
        assert count in series
    for reason in autoscaling.REASONS:
        key = ("pilothouse_operator_autoscaler_decisions_total", frozenset({("reason", reason)}))
        assert key in series, f"autoscaler reason {reason} is not exposed by a fresh operator"
    checked = promtool.check_metrics(fresh)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""

    before = _reconciles(fresh, "AgentDeployment")
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT))
    busy = wait_until(
        operator.metrics,
        lambda text: _reconciles(text, "AgentDeployment") > before,
        what="a reconcile of the new agent in the operator's /metrics",
    )

    checked = promtool.check_metrics(busy)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""
