"""Is the cluster serving CRDs as new as this operator? Checked before anything is reconciled.

Helm never upgrades a chart's ``crds/`` folder, and a GitOps tool may sync the operator before
its CRDs: an operator newer than the CRDs it finds would reconcile objects whose new fields the
API server has silently pruned (a guard rail committed to Git that does nothing). So the
reconciler asks :class:`SchemaGate` first. It compares the ``openAPIV3Schema`` the cluster
serves for ``v1alpha1`` with the one this operator generates from its own models
(:mod:`pilothouse.operator.crdgen`): every field the operator knows must be served. Extra served
fields (CRDs newer than the operator, during a rolling upgrade) are fine.

When fields are missing, agents are reported ``Stalled`` with reason ``OutdatedCRD`` and a
message naming the CRD, the missing fields and how to upgrade; nothing is applied. The verdict
is cached: a good one for the life of the process (CRDs are not downgraded under a running
operator), a bad one for :data:`RECHECK_SECONDS`, so upgrading the CRDs unblocks the operator
without a restart. When the CRDs cannot be read (RBAC without ``rbac.crdRead``), the check is
skipped with one warning: the operator then trusts the CRDs, as it did before the check existed.

:func:`missing_fields` is pure; :class:`SchemaGate` does the reading (through :mod:`kube`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.operator import crdgen, errors, kube

__all__ = ["RECHECK_SECONDS", "OutdatedCRD", "SchemaGate", "missing_fields"]

log = logging.getLogger(__name__)

RECHECK_SECONDS: Final = 30.0
"""How long an "outdated" verdict is trusted before the served CRDs are read again."""
MAX_NAMED_FIELDS: Final = 8
"""Missing fields named in a message; the rest are counted."""


def _paths(schema: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from _paths(sub, path)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _paths(items, f"{prefix}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from _paths(extra, f"{prefix}{{}}")


def _served_schema(crd: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    for served in (crd.get("spec") or {}).get("versions") or []:
        if served.get("name") == version and served.get("served", True):
            schema: Mapping[str, Any] = (served.get("schema") or {}).get("openAPIV3Schema") or {}
            return schema
    return None


def missing_fields(expected: Mapping[str, Any], served: Mapping[str, Any] | None) -> list[str]:
    """Field paths of the ``expected`` CRD that the ``served`` CRD (or None: absent) lacks.

    Paths read like ``spec.agent.toolChoice``; ``[]`` stands for a list's items and ``{}`` for a
    map's values. A missing version counts as every field missing.
    """
    version = expected["spec"]["versions"][0]["name"]
    want = _served_schema(expected, version) or {}
    have = None if served is None else _served_schema(served, version)
    if have is None:
        return sorted(_paths(want))
    if have.get("x-kubernetes-preserve-unknown-fields"):
        return []
    served_paths = set(_paths(have))
    return sorted(p for p in _paths(want) if p not in served_paths)


@dataclass(frozen=True)
class OutdatedCRD:
    """The served CRD lacks fields this operator needs."""

    crd: str
    missing: tuple[str, ...]

    @property
    def message(self) -> str:
        named = ", ".join(self.missing[:MAX_NAMED_FIELDS])
        more = len(self.missing) - MAX_NAMED_FIELDS
        if more > 0:
            named += f" and {more} more"
        return (
            f"the CustomResourceDefinition {self.crd} in the cluster is older than this "
            f"operator: it does not serve {named}, so the API server would drop them from "
            "objects; nothing is applied until the CRDs are upgraded (helm upgrade with "
            "crds.enabled, or kubectl apply --server-side -f crds/)"
        )


def _expected() -> list[dict[str, Any]]:
    return [crdgen.agent_crd(), crdgen.policy_crd()]


class SchemaGate:
    """Reads the served CRDs and answers whether the operator may reconcile."""

    def __init__(
        self,
        client: kube.Kube,
        *,
        expected: Callable[[], list[dict[str, Any]]] = _expected,
        monotonic: Callable[[], float] = time.monotonic,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self._kube = client
        self._expected = expected
        self._monotonic = monotonic
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._verdict: OutdatedCRD | None = None
        self._settled = False
        self._checked_at: float | None = None

    def problem(self) -> OutdatedCRD | None:
        """None when the served CRDs carry every field this operator needs (or can't be read)."""
        with self._lock:
            now = self._monotonic()
            if self._settled or (
                self._checked_at is not None and now - self._checked_at < self._recheck
            ):
                return self._verdict
            try:
                self._verdict = self._check()  # KubeUnavailable: not checked, retried later
            except errors.KubeRejected as e:
                log.warning(
                    "cannot read the CustomResourceDefinitions (%s); their schema is not checked "
                    "against this operator's (grant list on customresourcedefinitions: the "
                    "chart's rbac.crdRead)",
                    e,
                )
                self._verdict = None
            self._checked_at = now
            if self._verdict is None:
                self._settled = True
            else:
                log.error("%s", self._verdict.message)
            return self._verdict

    def _check(self) -> OutdatedCRD | None:
        for crd in self._expected():
            name = crd["metadata"]["name"]
            missing = missing_fields(crd, self._kube.get_crd(name))
            if missing:
                return OutdatedCRD(name, tuple(missing))
        return None
