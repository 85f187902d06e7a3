"""Which watch events of an agent's children mean drift the operator must put back."""

from __future__ import annotations

import pytest

from pilothouse.operator import reconciling


@pytest.mark.parametrize(
    ("event", "known", "seen", "decision"),
    [
        (None, None, "g1", "skip"),  # initial listing: the resume reconcile covers it
        (None, "g1", "g2", "skip"),
        ("ADDED", "g1", "g1", "skip"),  # the operator's own write, echoed back
        ("MODIFIED", "g1", "g1", "skip"),
        ("MODIFIED", "g1", "g2", "reconcile"),  # kubectl scale, an edited spec
        ("MODIFIED", "rv10", "rv11", "reconcile"),  # an edited ConfigMap
        ("MODIFIED", None, "g3", "reconcile"),  # never written by this process: check it
        ("DELETED", "rv10", "rv10", "reconcile"),  # deleted by someone: recreate
        ("DELETED", None, "g1", "reconcile"),  # deleted while this process had not written it
        ("DELETED", "pruned", "g1", "skip"),  # pruned by the operator itself
    ],
)
def test_drift_decision(event: str | None, known: str | None, seen: str, decision: str) -> None:
    assert reconciling.decide_drift(event, known, seen) == decision
