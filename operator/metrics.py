"""Prometheus metrics of the operator, in one registry of their own.

The reconciler updates these objects; :mod:`pilothouse.operator.cli` serves :data:`REGISTRY` on
``--metrics-port`` (``/metrics``). A registry of its own keeps the operator's series apart from
the runtime's when both are imported in one process (tests, the demo). Label values are bounded:
kinds and result names are constants, agents are the cluster's AgentDeployments. Series whose
labels are known in advance (every kind and result of reconciles, every autoscaler reason) are
created at 0 by the reconciler and the autoscaler when they are built, so a first failure is an
increase an alert can see; an error's class appears when it first happens.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "AUTOSCALER_DECISIONS",
    "DESIRED_REPLICAS",
    "QUEUE_DEPTH",
    "RECONCILES",
    "RECONCILE_DURATION",
    "RECONCILE_ERRORS",
    "REGISTRY",
]

REGISTRY: Final = CollectorRegistry(auto_describe=True)

RECONCILES: Final = Counter(
    "pilothouse_operator_reconciles_total",
    "Reconciles by kind (AgentDeployment, AgentPolicy) and result (ok, stalled, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION: Final = Histogram(
    "pilothouse_operator_reconcile_duration_seconds",
    "Duration of one reconcile, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS: Final = Counter(
    "pilothouse_operator_reconcile_errors_total",
    "Reconciles that failed and will be retried, by kind and error class.",
    ["kind", "error"],
    registry=REGISTRY,
)
AUTOSCALER_DECISIONS: Final = Counter(
    "pilothouse_operator_autoscaler_decisions_total",
    "Autoscaler decisions by reason (ScaledUp, ScaledDown, ScaleDownStabilizing, Steady, ...).",
    ["reason"],
    registry=REGISTRY,
)
DESIRED_REPLICAS: Final = Gauge(
    "pilothouse_operator_desired_replicas",
    "Replicas the autoscaler decided for an agent.",
    ["namespace", "agent"],
    registry=REGISTRY,
)
QUEUE_DEPTH: Final = Gauge(
    "pilothouse_operator_queue_depth",
    "Backlog of an agent's queue at the last autoscaler read.",
    ["namespace", "agent"],
    registry=REGISTRY,
)
