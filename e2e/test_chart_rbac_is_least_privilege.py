"""The chart's RBAC is exactly what the operator needs: every rule used, none missing, none spare.

The real operator (``pilothouse-operator``, the image's entry point, run from this checkout) runs
with the arguments of the chart's Deployment and the token of the chart's ServiceAccount, bound
to the chart's (Cluster)Role, against the real API server, through a recording proxy
(:mod:`api_recorder`). It then goes through everything it does for a living: an agent with a
policy, a prompt from a ConfigMap, two replicas (so a PodDisruptionBudget) and a NetworkPolicy,
Ready; scaled down to one without network rules (the budget and the NetworkPolicy pruned); given
a ServiceAccount of its own (``podTemplate.serviceAccountName``: the operator's one pruned);
switched to autoscaling with a backlog in a real Redis whose URL is in a Secret (the Deployment
scaled through its scale subresource); deleted (its finalizer removed, its review
ClusterRoleBinding deleted). Standby replicas peer through a Kopf peering object, namespaced
scope works from Roles alone.

Then: no request was refused, and the (group, resource, verb) the operator used are exactly those
the chart grants. And each rule is needed: without it, the API server refuses the operator, and
the agent says so in its status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import api_recorder
import chart_operator
import helm_chart
import operator_harness as h
import pytest
import redis
from cluster.launcher import Cluster
from polling import wait_until

from pilothouse.runtime import config, devservers, queue

AGENT = "rbac-probe"
POLICY = "rbac-guard"
PROMPTS = "rbac-prompts"
ACCOUNT = "rbac-own-account"  # podTemplate.serviceAccountName: the operator's own one goes
SCALING = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "targetQueueDepthPerReplica": 5,
    "scaleDownStabilizationSeconds": 300,
}

Rule = dict[str, Any]
Grant = tuple[str, str, str]  # group, resource, verb

RBAC = "rbac.authorization.k8s.io"
CHECKED_INSIDE: dict[Grant, tuple[tuple[str, str], set[str]]] = {
    (RBAC, "clusterroles", "bind"): ((RBAC, "clusterrolebindings"), {"create", "patch"}),
}
"""Rights the API server checks while serving another request, never requested themselves: a
binding of a role the operator does not hold needs ``bind`` on it. Without the right, that
other request (resource, verbs) is refused."""


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def redis_server() -> Iterator[devservers.RedisServer]:
    with devservers.RedisServer() as server:
        yield server.start()


@pytest.fixture(scope="module")
def crds(k8s_cluster: Cluster, helm: helm_chart.Helm) -> None:
    """The Pilothouse and Kopf peering CRDs, from the chart (installed by an admin, as Helm is)."""
    docs = helm.template(sets=["operator.standby.enabled=true"])
    found = [d for d in docs if helm_chart.is_crd(d)]
    k8s_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=helm_chart.to_yaml(found)
    )
    helm_chart.wait_established(k8s_cluster.kubectl, found)


def grants(rules: list[Rule]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def used(attributes: set[api_recorder.Attributes]) -> set[Grant]:
    return {(a.group, a.resource, a.verb) for a in attributes}


def show(items: set[Grant]) -> str:
    return ", ".join(f"{v} {g or 'core'}/{r}" for g, r, v in sorted(items)) or "nothing"


class Release:
    """The chart's RBAC objects of one release, applied for real, and its operator arguments."""

    def __init__(self, cluster: Cluster, helm: helm_chart.Helm, namespace: str, sets: list[str]):
        self.cluster = cluster
        self.namespace = namespace
        self.name = f"rbac-{uuid.uuid4().hex[:6]}"
        self.docs = helm.template(self.name, namespace, sets=sets)
        self.account = helm_chart.one(
            self.docs, "ServiceAccount", f"{self.name}-pilothouse-operator"
        )
        self.roles = helm_chart.kinds(self.docs, "ClusterRole", "Role")
        self.roles = [r for r in self.roles if r["metadata"]["name"].endswith("-operator")]
        self.bindings = [
            d
            for d in helm_chart.kinds(self.docs, "ClusterRoleBinding", "RoleBinding")
            if d["metadata"]["name"].endswith("-operator")
        ]
        container = helm_chart.one(self.docs, "Deployment")["spec"]["template"]["spec"]
        self.args: list[str] = container["containers"][0]["args"]
        self.peerings = helm_chart.kinds(self.docs, "ClusterKopfPeering", "KopfPeering")

    def rules(self) -> list[Rule]:
        return [rule for role in self.roles for rule in role["rules"]]

    def apply(self, *, drop: Callable[[Rule], bool] = lambda _: False) -> None:
        roles = [{**r, "rules": [x for x in r["rules"] if not drop(x)]} for r in self.roles]
        objects = [self.account, *roles, *self.bindings, *self.peerings]
        self.cluster.kubectl("apply", "-f", "-", input=helm_chart.to_yaml(objects))

    def delete(self) -> None:
        objects = (*self.roles, *self.bindings, *self.peerings)
        cluster_scoped = [d for d in objects if d["kind"].startswith("Cluster")]
        for doc in cluster_scoped:
            self.cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"], check=False)

    def token(self) -> str:
        return chart_operator.service_account_token(
            self.cluster, self.namespace, self.account["metadata"]["name"]
        )

    @contextlib.contextmanager
    def operator(
        self, recorder: api_recorder.ApiRecorder, workdir: Path
    ) -> Iterator[chart_operator.OperatorProcess]:
        """The operator as this release's pod would run it, through the recording proxy."""
        kubeconfig = recorder.kubeconfig(self.token(), workdir / "operator.kubeconfig")
        with chart_operator.running(
            self.args, kubeconfig, workdir, pod_id=f"{self.name}-operator-0"
        ) as operator:
            yield operator


def push_backlog(url: str, namespace: str, count: int) -> None:
    cfg = config.RuntimeConfig(
        agent=AGENT, namespace=namespace, model=config.ModelConfig(endpoint="http://m/v1", name="m")
    )
    client = redis.Redis.from_url(url)
    try:
        for i in range(count):
            client.xadd(queue.stream_key(cfg), {"request": str(i)})
    finally:
        client.close()


def agent_objects(redis_url: str) -> list[dict[str, Any]]:
    prompts = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": PROMPTS},
        "data": {"system": "You answer questions about RBAC."},
    }
    policy = h.policy_manifest(POLICY, {"costLimit": {"maxUsdPerHour": 10}})
    agent = h.small_agent(AGENT, replicas=2, policyRefs=[{"name": POLICY}], network={})
    agent["spec"]["agent"].pop("systemPrompt")
    agent["spec"]["agent"]["systemPromptFrom"] = {
        "configMapKeyRef": {"name": PROMPTS, "key": "system"}
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}}
    return [h.redis_secret(redis_url), prompts, account, policy, agent]


def run_life_cycle(
    cluster: Cluster, namespace: str, redis_url: str, check: Callable[[], None]
) -> None:
    """Everything the operator does for an agent, step by step; check() between steps."""

    def until(probe: Callable[[], Any], cond: Callable[[Any], bool], what: str) -> None:
        def probe_checked() -> Any:
            check()
            return probe()

        wait_until(probe_checked, cond, what=what, timeout=90)

    h.apply(cluster, namespace, *agent_objects(redis_url))
    until(lambda: h.get(cluster, "agd", AGENT, namespace) or {}, h.is_ready, "the agent Ready")
    until(lambda: h.get(cluster, "pdb", AGENT, namespace), bool, "its PodDisruptionBudget")
    until(
        lambda: (h.get(cluster, "agp", POLICY, namespace) or {}).get("status", {}),
        lambda s: AGENT in json.dumps(s),
        "the policy's status to name the agent",
    )

    until(lambda: h.get(cluster, "networkpolicy", AGENT, namespace), bool, "its NetworkPolicy")

    patch = json.dumps({"spec": {"replicas": 1, "network": None}})
    cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)
    until(lambda: h.get(cluster, "pdb", AGENT, namespace), lambda p: p is None, "the budget pruned")
    until(
        lambda: h.get(cluster, "networkpolicy", AGENT, namespace),
        lambda p: p is None,
        "the NetworkPolicy pruned",
    )

    patch = json.dumps({"spec": {"podTemplate": {"serviceAccountName": ACCOUNT}}})
    cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)
    until(
        lambda: h.get(cluster, "serviceaccount", AGENT, namespace),
        lambda a: a is None,
        "the operator's ServiceAccount pruned for podTemplate.serviceAccountName",
    )
    until(lambda: h.get(cluster, "agd", AGENT, namespace) or {}, h.is_ready, "Ready again")

    push_backlog(redis_url, namespace, 12)  # ceil(12 / 5) = 3 replicas
    patch = json.dumps({"spec": {"replicas": None, "scaling": SCALING}})
    cluster.kubectl("patch", "agd", AGENT, "-n", namespace, "--type=merge", "-p", patch)
    until(
        lambda: (h.get(cluster, "deployment", AGENT, namespace) or {}).get("spec", {}),
        lambda s: s.get("replicas") == 3,
        "the autoscaler to scale the Deployment to 3",
    )

    cluster.kubectl("delete", "agd", AGENT, "-n", namespace, "--wait=false")
    until(lambda: h.get(cluster, "agd", AGENT, namespace), lambda a: a is None, "the agent gone")
    cluster.kubectl("delete", "agp", POLICY, "-n", namespace, "--wait=false")
    until(lambda: h.get(cluster, "agp", POLICY, namespace), lambda p: p is None, "the policy gone")


@pytest.fixture
def agent_ns(k8s_cluster: Cluster, crds: None) -> Iterator[str]:
    """A namespace for the agent; emptied at the end even when no operator is left to help."""
    name = f"e2e-rbac-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        for kind in ("agd", "agp"):
            found = k8s_cluster.kubectl("get", kind, "-n", name, "-o", "name", check=False)
            for obj in found.stdout.split():
                k8s_cluster.kubectl(
                    "patch", obj, "-n", name, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False,
                )  # fmt: skip
        k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("scope", ["cluster-standby", "namespaced"])
def test_operator_uses_exactly_the_granted_rules(
    k8s_cluster: Cluster,
    helm: helm_chart.Helm,
    k8s_namespace: str,
    agent_ns: str,
    redis_server: devservers.RedisServer,
    tmp_path: Path,
    scope: str,
) -> None:
    sets = ["runtime.redis.secretName=agent-redis"]
    if scope == "namespaced":
        sets += ["rbac.scope=namespaced", f"watchNamespaces={{{agent_ns}}}"]
    else:
        sets += ["operator.standby.enabled=true"]
    release = Release(k8s_cluster, helm, k8s_namespace, sets)
    release.apply()
    server, ca = chart_operator.api_server(k8s_cluster, tmp_path)
    try:
        with (
            api_recorder.ApiRecorder(server, ca) as recorder,
            release.operator(recorder, tmp_path) as operator,
        ):
            refused: set[api_recorder.Attributes] = set()

            def check() -> None:
                operator.check_alive()
                refused.update(recorder.attributes(refused=True))
                assert not refused, (
                    f"refused:\n{api_recorder.describe(refused)}\n{operator.log_tail()}"
                )

            run_life_cycle(k8s_cluster, agent_ns, redis_server.url, check)
        allowed = used(recorder.attributes(refused=False))
        with (tmp_path / "requests.jsonl").open("w") as out:  # for a failure's post-mortem
            for request in recorder.recorded():
                out.write(json.dumps(dataclasses.asdict(request)) + "\n")
    finally:
        release.delete()

    granted = grants(release.rules())
    inside = {g for g in CHECKED_INSIDE if (*CHECKED_INSIDE[g][0], "create") in allowed}
    allowed |= inside  # the review binding was created: the API server checked bind
    assert allowed - granted == set(), f"used without a grant: {show(allowed - granted)}"
    assert granted - allowed == set(), f"granted but never used: {show(granted - allowed)}"


BASE_SETS = ("runtime.redis.secretName=agent-redis",)
PLACEHOLDER = "agent-namespace"  # replaced by the test's namespace
NAMESPACED_SETS = (*BASE_SETS, "rbac.scope=namespaced", f"watchNamespaces={{{PLACEHOLDER}}}")


def _rules_to_drop() -> list[tuple[tuple[str, ...], Rule]]:
    """Each rule of the default ClusterRole, then each rule only namespaced scope adds to its
    ClusterRole (Namespace reads), with the values that render it. Computed at collection time:
    they parametrize the test."""
    out: list[tuple[tuple[str, ...], Rule]] = []
    with tempfile.TemporaryDirectory() as home:
        helm = helm_chart.Helm(helm_chart.helm_binary_path(), Path(home))
        for sets in (BASE_SETS, NAMESPACED_SETS):
            docs = helm.template("rules", sets=list(sets))
            role = helm_chart.one(docs, "ClusterRole", "rules-pilothouse-operator")
            known = [rule for _, rule in out]
            out += [(sets, rule) for rule in role["rules"] if rule not in known]
    return out


RULES_TO_DROP = _rules_to_drop()


def _rule_id(rule: Rule) -> str:
    return ",".join(f"{g or 'core'}/{r}" for g in rule["apiGroups"] for r in rule["resources"])


@pytest.mark.parametrize(
    ("sets", "dropped"), RULES_TO_DROP, ids=[_rule_id(r) for _, r in RULES_TO_DROP]
)
def test_without_any_one_rule_the_operator_is_refused(
    k8s_cluster: Cluster,
    helm: helm_chart.Helm,
    k8s_namespace: str,
    agent_ns: str,
    redis_server: devservers.RedisServer,
    tmp_path: Path,
    sets: tuple[str, ...],
    dropped: Rule,
) -> None:
    values = [item.replace(PLACEHOLDER, agent_ns) for item in sets]
    release = Release(k8s_cluster, helm, k8s_namespace, values)
    release.apply(drop=lambda rule: rule == dropped)
    server, ca = chart_operator.api_server(k8s_cluster, tmp_path)
    wanted = {(g, r) for g in dropped["apiGroups"] for r in dropped["resources"]}
    verbs = set(dropped["verbs"])
    for g, r, v in grants([dropped]):
        if (g, r, v) in CHECKED_INSIDE:
            wanted, verbs = {CHECKED_INSIDE[(g, r, v)][0]}, CHECKED_INSIDE[(g, r, v)][1]
    # Everything at once: a scaled agent of at least two replicas (so a budget), a backlog, a
    # prompt from a ConfigMap, a policy.
    push_backlog(redis_server.url, agent_ns, 12)
    objects = agent_objects(redis_server.url)
    objects[-1]["spec"].pop("replicas")
    objects[-1]["spec"]["scaling"] = {**SCALING, "minReplicas": 2}
    try:
        with (
            api_recorder.ApiRecorder(server, ca) as recorder,
            release.operator(recorder, tmp_path) as operator,
        ):
            h.apply(k8s_cluster, agent_ns, *objects)

            def refused() -> set[api_recorder.Attributes]:
                operator.check_alive()
                return {
                    a for a in recorder.attributes(refused=True) if (a.group, a.resource) in wanted
                }

            found = wait_until(refused, bool, what=f"a refusal on {_rule_id(dropped)}", timeout=60)
    finally:
        release.delete()

    assert {a.verb for a in found} <= verbs


def test_a_refused_request_stalls_the_agent_until_the_rule_is_granted(
    k8s_cluster: Cluster,
    helm: helm_chart.Helm,
    k8s_namespace: str,
    agent_ns: str,
    redis_server: devservers.RedisServer,
    tmp_path: Path,
) -> None:
    """An API error during a reconcile is never silent: Stalled with the server's refusal and a
    warning Event; once the permission is granted, the operator's retry makes the agent Ready."""
    release = Release(k8s_cluster, helm, k8s_namespace, list(BASE_SETS))
    dropped = next(r for r in release.rules() if r["resources"] == ["serviceaccounts"])
    release.apply(drop=lambda rule: rule == dropped)
    server, ca = chart_operator.api_server(k8s_cluster, tmp_path)
    try:
        with (
            api_recorder.ApiRecorder(server, ca) as recorder,
            release.operator(recorder, tmp_path) as operator,
        ):
            h.apply(k8s_cluster, agent_ns, h.redis_secret(redis_server.url), h.small_agent(AGENT))

            def stalled() -> dict[str, Any]:
                operator.check_alive()
                return h.condition(h.get(k8s_cluster, "agd", AGENT, agent_ns), "Stalled")

            found = wait_until(stalled, lambda c: c.get("status") == "True", what="Stalled")
            assert found["reason"] == "ApiForbidden"
            assert "serviceaccounts" in found["message"]
            assert "forbidden" in found["message"]
            events = h.items(
                k8s_cluster, "events", agent_ns,
                f"--field-selector=involvedObject.name={AGENT},reason=ApiForbidden",
            )  # fmt: skip
            assert events
            assert events[0]["type"] == "Warning"

            release.apply()  # the chart's rules, all of them
            h.wait_for_agent(k8s_cluster, agent_ns, AGENT, h.is_ready, what="Ready", timeout=150)
            k8s_cluster.kubectl("delete", "agd", AGENT, "-n", agent_ns, "--timeout=60s")
    finally:
        release.delete()
