"""URLs and label keys/values that cannot work are refused by the API server, naming the field.

An endpoint with a space in its host, an ``otlpEndpoint`` that is not a URL, a ``matchLabels``
key with a space and a ``!`` (a policy that would silently match nothing): the CRDs generated
from the pydantic models carry patterns and a CEL rule over map keys, so ``kubectl apply``
fails at once with the field's path. Valid forms of the same fields are accepted.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import operator_harness as h
import pytest
from cluster.launcher import Cluster

MODEL = {"endpoint": "http://mock-llm.invalid/v1", "name": "m"}


def _create(
    cluster: Cluster, namespace: str, doc: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
    )


def _agent(**spec: Any) -> dict[str, Any]:
    return h.agent_manifest("probe", {"agent": {"systemPrompt": "x", "model": MODEL}, **spec})


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "endpoint-with-a-space",
        _agent(
            agent={"systemPrompt": "x", "model": {**MODEL, "endpoint": "https://exa mple.com/v1"}}
        ),
        "spec.agent.model.endpoint",
    ),
    (
        "otlp-not-a-url",
        _agent(telemetry={"otlpEndpoint": "not a url"}),
        "spec.telemetry.otlpEndpoint",
    ),
    (
        "tool-url-without-host",
        _agent(
            agent={
                "systemPrompt": "x",
                "model": MODEL,
                "tools": [{"name": "t", "url": "https:///x"}],
            }
        ),
        "spec.agent.tools[0].url",
    ),
    (
        "pod-label-key",
        _agent(podTemplate={"labels": {"bad key!": "x"}}),
        "spec.podTemplate.labels",
    ),
    (
        "pod-label-value",
        _agent(podTemplate={"labels": {"team": "not ok!"}}),
        "spec.podTemplate.labels.team",
    ),
    (
        "match-labels-key",
        h.policy_manifest("probe", {"targetSelector": {"matchLabels": {"bad key!": "x"}}}),
        "spec.targetSelector.matchLabels",
    ),
    (
        "match-labels-value",
        h.policy_manifest("probe", {"targetSelector": {"matchLabels": {"team": "a b"}}}),
        "spec.targetSelector.matchLabels.team",
    ),
    (
        "match-expressions-key",
        h.policy_manifest(
            "probe",
            {"targetSelector": {"matchExpressions": [{"key": "bad key!", "operator": "Exists"}]}},
        ),
        "spec.targetSelector.matchExpressions[0].key",
    ),
]


@pytest.mark.parametrize(("case", "doc", "field"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_refused_naming_the_field(
    k8s_cluster: Cluster, k8s_namespace: str, case: str, doc: dict[str, Any], field: str
) -> None:
    h.install_crds(k8s_cluster)

    result = _create(k8s_cluster, k8s_namespace, doc)

    assert result.returncode != 0, case
    assert field in result.stderr


def test_valid_urls_and_labels_are_accepted(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    h.install_crds(k8s_cluster)
    agent = _agent(
        agent={
            "systemPrompt": "x",
            "model": {**MODEL, "endpoint": "https://llm.example.com:8443/v1?x=1"},
            "tools": [{"name": "t", "url": "http://[fd00::1]:8080/lookup"}],
        },
        telemetry={"otlpEndpoint": "http://otel-collector.observability:4318"},
        podTemplate={"labels": {"example.com/team": "support", "tier": ""}},
    )
    policy = h.policy_manifest(
        "probe", {"targetSelector": {"matchLabels": {"app.kubernetes.io/part-of": "shop_v2"}}}
    )

    for doc in (agent, policy):
        result = _create(k8s_cluster, k8s_namespace, doc)
        assert result.returncode == 0, result.stderr
