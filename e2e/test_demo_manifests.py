"""The demo's pure transformations: examples pointed at local services without touching the
originals, the chart's RBAC picked by the ServiceAccount it binds, the pod's environment resolved
from Secrets as the kubelet would. No cluster: the documents are the repository's examples and
``helm template`` of its chart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_chart
import pytest
import yaml
from demo import manifests, waiting

REPO = Path(__file__).resolve().parents[1]
LOCAL = manifests.LocalServices(
    llm_url="http://127.0.0.1:1/v1",
    llm_api_key="demo-key",
    tools_url="http://127.0.0.1:2",
    redis_url="redis://127.0.0.1:3/0",
    postgres_dsn="postgresql://postgres@127.0.0.1:4/pilothouse",
    scale_down_window=7,
)


def _examples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((REPO / "crds" / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_examples_point_at_the_local_services_and_stay_unchanged() -> None:
    docs = _examples()
    before = copy.deepcopy(docs)

    pointed, changes = manifests.point_examples_at(docs, LOCAL)

    assert docs == before
    agent = _one(pointed, "AgentDeployment", "customer-support")["spec"]
    models = [agent["agent"]["model"], *agent["agent"]["fallbackModels"]]
    assert {m["endpoint"] for m in models} == {LOCAL.llm_url}
    assert [t["url"] for t in agent["agent"]["tools"]] == [
        "http://127.0.0.1:2/weather",
        "http://127.0.0.1:2/returns",
    ]
    assert agent["scaling"]["scaleDownStabilizationSeconds"] == 7
    assert _one(pointed, "Secret", "pilothouse-redis")["stringData"]["url"] == LOCAL.redis_url
    assert _one(pointed, "Secret", "pilothouse-postgres")["stringData"]["dsn"] == LOCAL.postgres_dsn
    assert _one(pointed, "Secret", "llm-credentials")["stringData"]["openai-api-key"] == "demo-key"
    # What is not local stays as the examples say: policies, the returns API token.
    assert [d for d in pointed if d["kind"] == "AgentPolicy"] == [
        d for d in before if d["kind"] == "AgentPolicy"
    ]
    assert _one(pointed, "Secret", "returns-api") == _one(before, "Secret", "returns-api")
    assert len(changes) == 7


def test_a_tool_the_tool_server_lacks_is_named() -> None:
    docs = _examples()
    agent = _one(docs, "AgentDeployment", "customer-support")
    agent["spec"]["agent"]["tools"][0]["name"] = "stock_lookup"

    with pytest.raises(waiting.DemoError, match="no tool 'stock_lookup'"):
        manifests.point_examples_at(docs, LOCAL)


def test_the_chart_gives_the_operators_rbac_and_arguments_not_the_test_pods(
    tmp_path: Path,
) -> None:
    docs = helm_chart.helm(tmp_path).template(namespace="pilothouse-system")

    parts = manifests.chart_parts(docs, namespace="pilothouse-system")
    assert {d["metadata"]["name"] for d in parts.crds} == {
        "agentdeployments.pilothouse.dev",
        "agentpolicies.pilothouse.dev",
    }
    assert parts.service_account == "pilothouse-operator"
    assert [d["kind"] for d in parts.rbac] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    assert all(d["metadata"]["name"] == "pilothouse-operator" for d in parts.rbac)
    assert "Deployment pilothouse-operator" in parts.skipped
    assert "ServiceAccount pilothouse-test" in parts.skipped  # the helm test pod's own account
    assert "--all-namespaces" in parts.operator_args

    argv = manifests.operator_argv(
        parts.operator_args, liveness_port=1, metrics_port=2, extra=["--autoscale-interval=1"]
    )
    assert [a for a in argv if a.startswith(("--liveness-port", "--metrics-port"))] == [
        "--liveness-port=1",
        "--metrics-port=2",
    ]
    assert argv[-1] == "--autoscale-interval=1"


def _deployment(*env: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "runtime", "env": list(env)}]}}}}


def test_the_pod_environment_comes_from_the_secrets_it_names() -> None:
    ref = {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}}
    deployment = _deployment(
        {"name": "PILOTHOUSE_REDIS_URL", **ref},
        {"name": "MODE", "value": "demo"},
        {"name": "AGAIN", **ref},
    )

    assert manifests.secret_refs(deployment) == [("redis", "url")]
    assert manifests.pod_env(deployment, {"redis": {"url": "redis://x"}}) == {
        "PILOTHOUSE_REDIS_URL": "redis://x",
        "MODE": "demo",
        "AGAIN": "redis://x",
    }
    with pytest.raises(waiting.DemoError, match="Secret redis has no key 'url'"):
        manifests.pod_env(deployment, {"redis": {}})


@pytest.mark.parametrize(("backlog", "replicas"), [(0, 1), (10, 1), (11, 2), (45, 5), (1000, 10)])
def test_the_expected_replicas_follow_the_autoscalers_rule(backlog: int, replicas: int) -> None:
    scaling = {"minReplicas": 1, "maxReplicas": 10, "targetQueueDepthPerReplica": 10}

    assert manifests.expected_replicas(backlog, scaling) == replicas
