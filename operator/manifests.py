"""Desired state of an agent's children: pure builders, spec -> manifest dicts.

The reconciler calls :func:`build_children` with the agent, its rendered config
(:mod:`pilothouse.operator.rendering`) and the replica count, then server-side-applies what
comes back. No I/O, input never mutated; ``tests/unit/golden/`` pins the output.

The pods meet the ``restricted`` Pod Security Standard: non-root with a numeric UID, no
privilege escalation, every capability dropped, RuntimeDefault seccomp, a read-only root
filesystem (``/tmp`` and the audit spool are emptyDirs). Secrets reach the pod only as
``secretKeyRef`` environment variables or a mounted Secret, never inlined. The pod template
carries the config's hash (``pilothouse.dev/config-hash``), so a change of the agent or of any
of its policies rolls the pods.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Final

from pilothouse.operator import api, labels, rendering, resources, settings

__all__ = [
    "CONTAINER_NAME",
    "MANAGED_KINDS",
    "build_children",
    "build_configmap",
    "build_deployment",
    "build_network_policy",
    "build_pdb",
    "build_review_binding",
    "build_service",
    "build_service_account",
    "effective_min_replicas",
    "owner_reference",
    "review_binding_name",
    "static_replicas",
]

Manifest = dict[str, Any]

CONTAINER_NAME: Final = "runtime"
MANAGED_KINDS: Final = (
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)
"""Every (apiVersion, kind) the operator creates for an agent, in apply order."""
SERVICE_PORT: Final = 80
TMP_SIZE: Final = "64Mi"
SPOOL_SIZE: Final = "1Gi"
SHUTDOWN_MARGIN_SECONDS: Final = 5
"""Added to ``workers.shutdownGraceSeconds`` for the pod's termination grace period."""
PRE_STOP_SLEEP_SECONDS: Final = 5
"""How long a terminating pod keeps running before it gets SIGTERM (the runtime container's
``preStop`` sleep): the Service's endpoints and the nodes' proxies drop the pod meanwhile, so
connections sent to it in that window are still served rather than refused. Counted in the
termination grace period, before ``workers.shutdownGraceSeconds``."""


def owner_reference(agent: resources.Agent) -> Manifest:
    """The ownerReference that makes the agent the controller of a child (and the GC delete it)."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.AGENT_KIND,
        "name": agent.meta.name,
        "uid": agent.meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(agent: resources.Agent, name: str, **extra: Any) -> Manifest:
    meta: Manifest = {
        "name": name,
        "namespace": agent.meta.namespace,
        "labels": labels.common_labels(agent.meta.name),
        "ownerReferences": [owner_reference(agent)],
    }
    meta.update(extra)
    return meta


def static_replicas(spec: api.AgentDeploymentSpec) -> int:
    """Replicas without ``spec.scaling``: ``spec.replicas``, 1 when unset."""
    return 1 if spec.replicas is None else spec.replicas


def effective_min_replicas(spec: api.AgentDeploymentSpec) -> int:
    """The fewest replicas the agent is meant to run (decides the PodDisruptionBudget)."""
    return spec.scaling.min_replicas if spec.scaling is not None else static_replicas(spec)


# ------------------------------------------------------------------------------- children


def build_service_account(agent: resources.Agent) -> Manifest | None:
    """The agent's own ServiceAccount; None when the agent runs as an existing one."""
    if agent.spec.pod_template.service_account_name is not None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(agent, labels.child_name(agent.meta.name)),
        "automountServiceAccountToken": False,
    }


def build_configmap(agent: resources.Agent, rendered: rendering.RenderedConfig) -> Manifest:
    """The ConfigMap holding the runtime config file."""
    annotations = {labels.CONFIG_HASH_ANNOTATION: rendered.hash}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            agent, labels.configmap_name(agent.meta.name), annotations=annotations
        ),
        "data": {labels.CONFIG_FILE: rendered.document},
    }


def build_service(agent: resources.Agent) -> Manifest:
    """A ClusterIP Service in front of the pods' HTTP API (and ``/metrics``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(agent, labels.child_name(agent.meta.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": labels.selector_labels(agent.meta.name),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def build_pdb(agent: resources.Agent) -> Manifest | None:
    """A PodDisruptionBudget (one pod at a time) when the agent runs at least two replicas.

    None below two: a budget on a single replica would block node drains forever.
    """
    if effective_min_replicas(agent.spec) < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(agent, labels.child_name(agent.meta.name)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels.selector_labels(agent.meta.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_deployment(
    agent: resources.Agent,
    rendered: rendering.RenderedConfig,
    *,
    replicas: int,
    defaults: settings.RuntimeDefaults,
) -> Manifest:
    """The runtime's Deployment: ``pilothouse serve`` with the rendered config mounted."""
    spec = agent.spec
    tpl = spec.pod_template
    name = agent.meta.name
    pod_annotations = {
        **tpl.annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(rendering.SERVER_PORT),
        "prometheus.io/path": "/metrics",
        labels.CONFIG_HASH_ANNOTATION: rendered.hash,
    }
    grace = spec.workers.shutdown_grace_seconds + PRE_STOP_SLEEP_SECONDS + SHUTDOWN_MARGIN_SECONDS
    pod: Manifest = {
        "serviceAccountName": tpl.service_account_name or labels.child_name(name),
        # The runtime reviews its callers' tokens with its own (kubernetes authentication).
        "automountServiceAccountToken": rendered.config.server.kubernetes_auth.enabled,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": math.ceil(grace),
        "securityContext": _pod_security(tpl.security_context, defaults),
        "containers": [_container(agent, rendered, defaults)],
        "volumes": _volumes(agent, rendered),
    }
    if tpl.node_selector:
        pod["nodeSelector"] = dict(tpl.node_selector)
    if tpl.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in tpl.tolerations
        ]
    if tpl.affinity:
        pod["affinity"] = dict(tpl.affinity)
    if tpl.topology_spread_constraints:
        pod["topologySpreadConstraints"] = [dict(c) for c in tpl.topology_spread_constraints]
    if tpl.priority_class_name:
        pod["priorityClassName"] = tpl.priority_class_name
    if tpl.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s.name} for s in tpl.image_pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(agent, labels.child_name(name)),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": labels.selector_labels(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {**tpl.labels, **labels.common_labels(name)},
                    "annotations": pod_annotations,
                },
                "spec": pod,
            },
        },
    }


DNS_PEER: Final[Manifest] = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
"""The cluster DNS (CoreDNS and kube-dns both carry ``k8s-app: kube-dns``)."""


def _peer(peer: api.NetworkPeer) -> Manifest:
    if peer.ip_block is not None:
        return {"ipBlock": peer.ip_block.model_dump(by_alias=True, exclude_defaults=True)}
    out: Manifest = {}
    for key, selector in (
        ("namespaceSelector", peer.namespace_selector),
        ("podSelector", peer.pod_selector),
    ):
        if selector is not None:
            out[key] = selector.model_dump(by_alias=True, exclude_defaults=True)
    return out


def build_network_policy(agent: resources.Agent) -> Manifest | None:
    """With ``spec.network``: the agent's NetworkPolicy. Ingress reaches only the API port
    (which serves the metrics too), from ``apiFrom`` (default: the agent's own namespace) and
    ``metricsFrom``; with ``egress``, connections go only to DNS and the rules given."""
    net = agent.spec.network
    if net is None:
        return None

    def port() -> list[Manifest]:
        return [{"port": rendering.SERVER_PORT, "protocol": "TCP"}]

    api_peers = [_peer(p) for p in net.api_from] or [{"podSelector": {}}]
    ingress = [{"from": api_peers, "ports": port()}]
    if net.metrics_from:
        ingress.append({"from": [_peer(p) for p in net.metrics_from], "ports": port()})
    spec: Manifest = {
        "podSelector": {"matchLabels": labels.selector_labels(agent.meta.name)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    if net.egress is not None:
        dns = {
            "to": [copy.deepcopy(DNS_PEER)],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
        rules: list[Manifest] = [dns]
        for rule in net.egress:
            out: Manifest = {"to": [_peer(p) for p in rule.to]}
            if rule.ports:
                out["ports"] = [p.model_dump(by_alias=True) for p in rule.ports]
            rules.append(out)
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["egress"] = rules
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(agent, labels.child_name(agent.meta.name)),
        "spec": spec,
    }


REVIEWER_CLUSTER_ROLE: Final = "system:auth-delegator"
"""The API server's built-in ClusterRole of exactly ``create`` on ``tokenreviews`` and
``subjectaccessreviews`` (what kube-rbac-proxy and aggregated API servers are bound to)."""


def review_binding_name(namespace: str, agent: str) -> str:
    """Name of the ClusterRoleBinding that lets an agent review its callers."""
    return f"pilothouse:reviews:{namespace}:{agent}"


def build_review_binding(
    agent: resources.Agent, rendered: rendering.RenderedConfig
) -> Manifest | None:
    """With Kubernetes authentication: the ClusterRoleBinding of the agent's ServiceAccount to
    :data:`REVIEWER_CLUSTER_ROLE`, and nothing more (token and access reviews are cluster-scoped,
    so no RoleBinding can grant them). Cluster-scoped, so it cannot be owned by the agent: the
    operator deletes it with the agent (labels find it). None without Kubernetes
    authentication."""
    if not rendered.config.server.kubernetes_auth.enabled:
        return None
    name, namespace = agent.meta.name, agent.meta.namespace
    account = agent.spec.pod_template.service_account_name or labels.child_name(name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": review_binding_name(namespace, name),
            "labels": {**labels.common_labels(name), labels.AGENT_NAMESPACE_KEY: namespace},
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": REVIEWER_CLUSTER_ROLE,
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def build_children(
    agent: resources.Agent,
    rendered: rendering.RenderedConfig,
    *,
    replicas: int,
    defaults: settings.RuntimeDefaults,
) -> tuple[Manifest, ...]:
    """Every child the agent should have, in apply order (the config before the pods)."""
    children = (
        build_service_account(agent),
        build_configmap(agent, rendered),
        build_service(agent),
        build_deployment(agent, rendered, replicas=replicas, defaults=defaults),
        build_pdb(agent),
        build_network_policy(agent),
    )
    return tuple(c for c in children if c is not None)


# ---------------------------------------------------------------------------------- parts


def _pod_security(
    overrides: api.PodSecurityOverrides, defaults: settings.RuntimeDefaults
) -> Manifest:
    ctx: Manifest = {
        "runAsNonRoot": True,
        "runAsUser": overrides.run_as_user or defaults.run_as,
        "runAsGroup": defaults.run_as if overrides.run_as_group is None else overrides.run_as_group,
        "fsGroup": defaults.run_as if overrides.fs_group is None else overrides.fs_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if overrides.fs_group_change_policy is not None:
        ctx["fsGroupChangePolicy"] = overrides.fs_group_change_policy
    if overrides.supplemental_groups:
        ctx["supplementalGroups"] = list(overrides.supplemental_groups)
    return ctx


def _container(
    agent: resources.Agent, rendered: rendering.RenderedConfig, defaults: settings.RuntimeDefaults
) -> Manifest:
    spec = agent.spec
    resources_ = spec.resources or defaults.resources
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": spec.image or defaults.image,
        "command": ["pilothouse", "serve", "--config", rendering.CONFIG_PATH],
        "ports": [{"name": "http", "containerPort": rendering.SERVER_PORT, "protocol": "TCP"}],
        "env": [
            {
                "name": e.name,
                "valueFrom": {"secretKeyRef": {"name": e.secret.name, "key": e.secret.key}},
            }
            for e in rendered.secret_env
        ],
        "resources": resources_.model_dump(by_alias=True, exclude_defaults=True),
        "startupProbe": _probe("/healthz", period=2, failures=30),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=5, failures=3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SLEEP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": _mounts(agent, rendered),
    }
    pull = spec.image_pull_policy or defaults.image_pull_policy
    if pull is not None:
        container["imagePullPolicy"] = pull
    if not container["env"]:
        del container["env"]
    return container


def _probe(path: str, *, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _mounts(agent: resources.Agent, rendered: rendering.RenderedConfig) -> list[Manifest]:
    mounts: list[Manifest] = [
        {"name": "config", "mountPath": rendering.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "spool", "mountPath": rendered.config.audit.spool_dir},
    ]
    if rendered.auth_tokens is not None:
        mounts.append(
            {"name": "auth-tokens", "mountPath": rendering.AUTH_TOKENS_DIR, "readOnly": True}
        )
    return mounts


def _volumes(agent: resources.Agent, rendered: rendering.RenderedConfig) -> list[Manifest]:
    volumes: list[Manifest] = [
        {"name": "config", "configMap": {"name": labels.configmap_name(agent.meta.name)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
        {"name": "spool", "emptyDir": {"sizeLimit": SPOOL_SIZE}},
    ]
    if rendered.auth_tokens is not None:
        volumes.append(
            {
                "name": "auth-tokens",
                "secret": {
                    "secretName": rendered.auth_tokens.name,
                    "items": [{"key": rendered.auth_tokens.key, "path": "tokens"}],
                },
            }
        )
    return volumes
