"""The operator reconciles only against CRDs that serve every field it knows.

An older CRD in the cluster (Helm never upgrades a chart's ``crds/`` folder; a GitOps tool may
sync the operator first) makes the API server prune the new fields from what users apply. The
schema gate finds such fields by comparing the served schema with the generated one.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pilothouse.operator import crdchecks, crdgen, errors


def _drop(crd: dict[str, Any], *path: str) -> dict[str, Any]:
    older = copy.deepcopy(crd)
    node = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path[:-1]:
        node = node["properties"][name]
    del node["properties"][path[-1]]
    return older


def test_the_generated_crds_serve_every_field() -> None:
    for crd in (crdgen.agent_crd(), crdgen.policy_crd()):
        assert crdchecks.missing_fields(crd, crd) == []


def test_a_crd_without_a_field_names_it_and_everything_under_it() -> None:
    crd = crdgen.agent_crd()
    older = _drop(crd, "spec", "reliability")

    missing = crdchecks.missing_fields(crd, older)

    assert "spec.reliability" in missing
    assert "spec.reliability.retry.attempts" in missing
    assert all(p.startswith("spec.reliability") for p in missing)


def test_fields_in_list_items_are_compared() -> None:
    crd = crdgen.agent_crd()
    older = copy.deepcopy(crd)
    tools = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["agent"]["properties"]["tools"]
    del tools["items"]["properties"]["method"]

    assert crdchecks.missing_fields(crd, older) == ["spec.agent.tools[].method"]


def test_a_newer_served_crd_is_fine() -> None:
    crd = crdgen.agent_crd()
    newer = copy.deepcopy(crd)
    spec = newer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["somethingNew"] = {"type": "string", "description": "from the future"}

    assert crdchecks.missing_fields(crd, newer) == []


def test_an_absent_crd_or_version_misses_everything() -> None:
    crd = crdgen.policy_crd()
    other_version = copy.deepcopy(crd)
    other_version["spec"]["versions"][0]["name"] = "v1beta1"

    assert "spec" in crdchecks.missing_fields(crd, None)
    assert crdchecks.missing_fields(crd, other_version) == crdchecks.missing_fields(crd, None)


class _Served:
    """What the API server serves, per CRD name (a stand-in for kube.Kube.get_crd)."""

    def __init__(self, crds: dict[str, dict[str, Any]], *, forbidden: bool = False) -> None:
        self.crds = crds
        self.forbidden = forbidden
        self.reads = 0

    def get_crd(self, name: str) -> dict[str, Any] | None:
        self.reads += 1
        if self.forbidden:
            raise errors.KubeRejected(403, "customresourcedefinitions is forbidden")
        return self.crds.get(name)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _served(agent: dict[str, Any]) -> dict[str, dict[str, Any]]:
    policy = crdgen.policy_crd()
    return {agent["metadata"]["name"]: agent, policy["metadata"]["name"]: policy}


def test_the_gate_stalls_until_the_crds_are_upgraded_then_stays_open() -> None:
    current = crdgen.agent_crd()
    served = _Served(_served(_drop(current, "spec", "scaling")))
    clock = _Clock()
    gate = crdchecks.SchemaGate(served, monotonic=clock, recheck_seconds=30)  # type: ignore[arg-type]

    problem = gate.problem()
    assert problem is not None
    assert problem.crd == "agentdeployments.pilothouse.dev"
    assert "spec.scaling" in problem.missing
    assert "older than this operator" in problem.message
    assert "spec.scaling" in problem.message

    # Not read again within the recheck interval…
    reads = served.reads
    clock.now += 29
    assert gate.problem() == problem
    assert served.reads == reads

    # …and once the CRDs are upgraded, the next check opens the gate for good.
    served.crds = _served(current)
    clock.now += 2
    assert gate.problem() is None
    reads = served.reads
    clock.now += 3600
    assert gate.problem() is None
    assert served.reads == reads


def test_a_message_names_a_few_fields_and_counts_the_rest() -> None:
    problem = crdchecks.OutdatedCRD("x.pilothouse.dev", tuple(f"spec.f{i}" for i in range(12)))

    assert "spec.f0" in problem.message
    assert "spec.f7" in problem.message
    assert "spec.f8" not in problem.message
    assert "and 4 more" in problem.message


def test_crds_that_cannot_be_read_are_trusted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = _Served({}, forbidden=True)
    gate = crdchecks.SchemaGate(served)  # type: ignore[arg-type]

    assert gate.problem() is None
    assert "cannot read the CustomResourceDefinitions" in caplog.text
    assert "rbac.crdRead" in caplog.text


def test_an_unreachable_api_server_is_not_a_verdict() -> None:
    class _Down(_Served):
        def get_crd(self, name: str) -> dict[str, Any] | None:
            raise errors.KubeUnavailable("connection refused")

    gate = crdchecks.SchemaGate(_Down({}))  # type: ignore[arg-type]
    with pytest.raises(errors.KubeUnavailable):
        gate.problem()
    with pytest.raises(errors.KubeUnavailable):  # asked again, not cached as "fine"
        gate.problem()
