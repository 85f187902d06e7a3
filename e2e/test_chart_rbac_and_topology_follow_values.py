"""The operator's RBAC and Deployment shape follow rbac.scope, watchNamespaces and standby.

Rendering only (helm template): cluster scope is one ClusterRole; namespaced scope is a Role in
each watched namespace and nothing cluster-wide beyond reading CRDs (and binding agents for token
reviews); without Secret reads no rule names Secrets; a standby means two
replicas, a rolling update, a PodDisruptionBudget and Kopf peering (objects and rules of the
right scope). Whether these rules are *enough* and *needed* is proven against the API server
by running the operator under them (test_chart_rbac_is_least_privilege.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_chart
import pytest
import yaml

from pilothouse.operator import cli

NS = "pilothouse-system"
OPERATOR = "pilothouse-operator"
PEERING_GROUP = "kopf.dev"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path_factory.mktemp("helm"))


def resources(rules: list[dict[str, Any]]) -> set[str]:
    return {
        f"{g or 'core'}/{r}" for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
    }


def test_cluster_scope_grants_one_cluster_role_and_no_roles(helm: helm_chart.Helm) -> None:
    docs = helm.template(namespace=NS)

    role = helm_chart.one(docs, "ClusterRole", OPERATOR)
    binding = helm_chart.one(docs, "ClusterRoleBinding", OPERATOR)
    assert helm_chart.kinds(docs, "Role", "RoleBinding") == []
    assert binding["roleRef"]["name"] == OPERATOR
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NS}]
    assert resources(role["rules"]) >= {
        "pilothouse.dev/agentdeployments",
        "pilothouse.dev/agentdeployments/status",
        "pilothouse.dev/agentpolicies/status",
        "core/configmaps",
        "apps/deployments",
        "policy/poddisruptionbudgets",
        "core/events",
        "apiextensions.k8s.io/customresourcedefinitions",
    }
    assert not any(r.startswith(PEERING_GROUP) for r in resources(role["rules"]))
    assert "core/namespaces" not in resources(role["rules"])  # Kopf cluster-wide needs none
    args = helm_chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args


def test_namespaced_scope_grants_a_role_per_watched_namespace(helm: helm_chart.Helm) -> None:
    docs = helm.template(namespace=NS, sets=["rbac.scope=namespaced", "watchNamespaces={a,b}"])

    roles = helm_chart.kinds(docs, "Role")
    bindings = helm_chart.kinds(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == NS
    cluster_role = helm_chart.one(docs, "ClusterRole", OPERATOR)
    assert resources(cluster_role["rules"]) == {
        "apiextensions.k8s.io/customresourcedefinitions",
        "core/namespaces",
        "rbac.authorization.k8s.io/clusterrolebindings",  # the agents' review bindings
        "rbac.authorization.k8s.io/clusterroles",
    }
    reads = [r for r in cluster_role["rules"] if r["apiGroups"] != ["rbac.authorization.k8s.io"]]
    assert {v for rule in reads for v in rule["verbs"]} == {"list", "watch"}
    args = helm_chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=a" in args
    assert "--namespace=b" in args
    assert "--all-namespaces" not in args


def test_namespaced_scope_without_crd_reads_has_nothing_cluster_wide(helm: helm_chart.Helm) -> None:
    docs = helm.template(
        namespace=NS,
        sets=[
            "rbac.scope=namespaced",
            "watchNamespaces={a}",
            "rbac.crdRead=false",
            "rbac.namespaceRead=false",
            "rbac.agentTokenReviews=false",
            "tests.enabled=false",
        ],
    )

    assert helm_chart.kinds(docs, "ClusterRole", "ClusterRoleBinding") == []
    assert len(helm_chart.kinds(docs, "Role")) == 1


def test_agents_review_bindings_are_the_only_rbac_objects_the_operator_may_create(
    helm: helm_chart.Helm,
) -> None:
    role = helm_chart.one(helm.template(namespace=NS), "ClusterRole", OPERATOR)
    rbac = [r for r in role["rules"] if r["apiGroups"] == ["rbac.authorization.k8s.io"]]
    assert rbac == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterrolebindings"],
            "verbs": ["create", "patch", "delete"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": ["system:auth-delegator"],
            "verbs": ["bind"],
        },
    ]


def test_without_secret_reads_the_operator_has_no_rbac_on_secrets(helm: helm_chart.Helm) -> None:
    for scope in (["rbac.scope=cluster"], ["rbac.scope=namespaced", "watchNamespaces={a,b}"]):
        docs = helm.template(
            namespace=NS,
            sets=[*scope, "rbac.secretRead=false", "operator.autoscalerRedis.secretName=ops"],
        )
        roles = helm_chart.kinds(docs, "ClusterRole", "Role")
        granted = {r for role in roles for r in resources(role["rules"])}
        assert "core/secrets" not in granted
        assert "core/configmaps" in granted
        container = helm_chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert "--no-secret-reads" in container["args"]
        redis = next(e for e in container["env"] if e["name"] == "PILOTHOUSE_OPERATOR_REDIS_URL")
        assert redis["valueFrom"] == {"secretKeyRef": {"name": "ops", "key": "url"}}
    default = helm.template(namespace=NS)
    role = helm_chart.one(default, "ClusterRole", OPERATOR)
    assert "core/secrets" in resources(role["rules"])


def test_single_operator_is_recreated_never_doubled(helm: helm_chart.Helm) -> None:
    docs = helm.template(namespace=NS)

    spec = helm_chart.one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert "--standalone" in spec["template"]["spec"]["containers"][0]["args"]
    assert helm_chart.kinds(docs, "PodDisruptionBudget", "ClusterKopfPeering", "KopfPeering") == []


def test_cluster_wide_standby_peers_through_a_cluster_peering(helm: helm_chart.Helm) -> None:
    docs = helm.template(namespace=NS, sets=["operator.standby.enabled=true"])

    spec = helm_chart.one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert "--peering=pilothouse" in spec["template"]["spec"]["containers"][0]["args"]
    assert helm_chart.one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    peering = helm_chart.one(docs, "ClusterKopfPeering", "pilothouse")
    assert helm_chart.is_hook(peering)
    crds = {d["metadata"]["name"] for d in docs if helm_chart.is_crd(d)}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    role = helm_chart.one(docs, "ClusterRole", OPERATOR)
    assert "kopf.dev/clusterkopfpeerings" in resources(role["rules"])


def test_namespaced_standby_peers_in_each_watched_namespace(helm: helm_chart.Helm) -> None:
    docs = helm.template(
        namespace=NS,
        sets=[
            "rbac.scope=namespaced",
            "watchNamespaces={a,b}",
            "operator.standby.enabled=true",
            "operator.standby.createPeeringCRDs=false",
        ],
    )

    peerings = helm_chart.kinds(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert helm_chart.kinds(docs, "ClusterKopfPeering") == []
    assert not [d for d in docs if helm_chart.is_crd(d) and "kopf.dev" in d["metadata"]["name"]]
    for role in helm_chart.kinds(docs, "Role"):
        assert "kopf.dev/kopfpeerings" in resources(role["rules"])


def test_runtime_defaults_reach_the_operator_as_flags(helm: helm_chart.Helm) -> None:
    docs = helm.template(
        namespace=NS,
        sets=[
            "image.repository=registry.example/pilothouse",
            "image.tag=1.2.3",
            "runtime.redis.secretName=redis",
            "runtime.postgres.secretName=pg",
            "runtime.postgres.secretKey=uri",
            "runtime.otlpEndpoint=http://otel:4318",
            "runtime.image.pullPolicy=Always",
        ],
    )

    container = helm_chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/pilothouse:1.2.3"
    assert container["command"] == ["pilothouse-operator"]
    args = container["args"]
    assert "--runtime-image=registry.example/pilothouse:1.2.3" in args
    assert "--otlp-endpoint=http://otel:4318" in args
    assert "--runtime-image-pull-policy=Always" in args
    joined = " ".join(args)
    assert "redis" in joined
    assert "pg" in joined
    assert "uri" in joined


@pytest.mark.parametrize(
    "values_file", [None, *helm_chart.CI_VALUES], ids=lambda p: p.name if p else "defaults"
)
def test_operator_accepts_the_rendered_arguments(
    helm: helm_chart.Helm, values_file: Path | None
) -> None:
    docs = helm.template(namespace=NS, values=[values_file] if values_file else [])
    container = helm_chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    values = yaml.safe_load(values_file.read_text()) if values_file else {}

    parsed = cli.build_parser().parse_args(container["args"])
    operator_settings = cli.settings_from_args(parsed)

    assert operator_settings.namespaces == tuple(values.get("watchNamespaces", ()))
    standby = values.get("operator", {}).get("standby", {}).get("enabled", False)
    assert operator_settings.peering == ("pilothouse" if standby else None)
    runtime = values.get("runtime", {})
    redis = operator_settings.runtime.redis_secret
    assert (redis.name if redis else None) == runtime.get("redis", {}).get("secretName")
    postgres = operator_settings.runtime.postgres_secret
    if postgres is not None:
        assert postgres.key == runtime["postgres"].get("secretKey", "dsn")
    assert operator_settings.runtime.otlp_endpoint == runtime.get("otlpEndpoint")
    assert operator_settings.runtime.image == container["image"]
    pull_policy = runtime.get("image", {}).get("pullPolicy") or None
    assert operator_settings.runtime.image_pull_policy == pull_policy
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[container["livenessProbe"]["httpGet"]["port"]] == operator_settings.liveness_port
    assert ports["metrics"] == operator_settings.metrics_port
