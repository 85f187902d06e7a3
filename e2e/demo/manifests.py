"""Pure transformations of the demo: examples pointed at local services, the chart's parts.

The demo applies ``crds/examples/`` as a user would, but those examples name production
endpoints (``api.openai.com``, ``weather.example.com``, in-cluster Redis and PostgreSQL
Services). :func:`point_examples_at` returns copies aimed at the local mock LLM, tool server,
Redis and PostgreSQL, with a short scale-down window, plus the list of what it changed (the
demo prints it): the examples themselves stay as users read them.

The rest turns what the cluster holds into what a local process needs: :func:`chart_parts`
picks the CRDs and RBAC out of ``helm template`` output and the operator's arguments out of its
Deployment; :func:`token_kubeconfig` writes a kubeconfig for a ServiceAccount token;
:func:`pod_env` does the kubelet's work of turning ``secretKeyRef`` env entries into values.
No I/O here: :mod:`demo.run` reads and applies.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from demo import waiting

__all__ = [
    "TOOL_PATHS",
    "ChartParts",
    "LocalServices",
    "chart_parts",
    "expected_replicas",
    "operator_argv",
    "pod_env",
    "point_examples_at",
    "secret_refs",
    "token_kubeconfig",
]

Doc = dict[str, Any]

TOOL_PATHS: Final = {"weather_api": "/weather", "initiate_return": "/returns"}
"""Where the local tool server serves each tool of the example agent."""
_RBAC_KINDS: Final = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
_PORT_FLAGS: Final = ("--liveness-port", "--metrics-port")


@dataclass(frozen=True)
class LocalServices:
    """Where the demo's local services listen, and the mock LLM's API key."""

    llm_url: str
    llm_api_key: str
    tools_url: str
    redis_url: str
    postgres_dsn: str
    scale_down_window: int


def point_examples_at(docs: Sequence[Doc], local: LocalServices) -> tuple[list[Doc], list[str]]:
    """Copies of the example documents aimed at ``local``, and one line per change made."""
    out = [copy.deepcopy(d) for d in docs]
    changes: list[str] = []
    secrets = {
        "llm-credentials": ("openai-api-key", local.llm_api_key, "the mock LLM's API key"),
        "pilothouse-redis": ("url", local.redis_url, local.redis_url),
        "pilothouse-postgres": ("dsn", local.postgres_dsn, "the local PostgreSQL"),
    }
    for doc in out:
        name = doc.get("metadata", {}).get("name", "")
        if doc.get("kind") == "Secret" and name in secrets:
            key, value, shown = secrets[name]
            doc.setdefault("stringData", {})[key] = value
            changes.append(f"Secret {name}: {key} -> {shown}")
        elif doc.get("kind") == "AgentDeployment":
            changes += _point_agent(doc, local)
    if not any(d.get("kind") == "AgentDeployment" for d in out):
        raise waiting.DemoError("the examples hold no AgentDeployment")
    return out, changes


def _point_agent(doc: Doc, local: LocalServices) -> list[str]:
    name = doc["metadata"]["name"]
    agent = doc["spec"]["agent"]
    changes = []
    models = [agent["model"], *agent.get("fallbackModels", [])]
    for model in models:
        model["endpoint"] = local.llm_url
    changes.append(f"{name}: endpoint of {len(models)} models -> mock LLM {local.llm_url}")
    for tool in agent.get("tools", []):
        path = TOOL_PATHS.get(tool["name"])
        if path is None:
            raise waiting.DemoError(f"{name}: the local tool server has no tool {tool['name']!r}")
        tool["url"] = local.tools_url + path
        changes.append(f"{name}: tool {tool['name']} -> {tool['url']}")
    scaling = doc["spec"].get("scaling")
    if scaling is not None:
        before = scaling.get("scaleDownStabilizationSeconds", "default")
        scaling["scaleDownStabilizationSeconds"] = local.scale_down_window
        changes.append(
            f"{name}: scaleDownStabilizationSeconds {before} -> {local.scale_down_window}"
            " (a short wait for the scale-down)"
        )
    return changes


def expected_replicas(backlog: int, scaling: Mapping[str, Any]) -> int:
    """What the autoscaler should ask for: ceil(backlog / target), within [min, max]."""
    target = int(scaling.get("targetQueueDepthPerReplica", 10))
    low, high = int(scaling.get("minReplicas", 1)), int(scaling.get("maxReplicas", 10))
    return max(low, min(high, math.ceil(backlog / target)))


@dataclass(frozen=True)
class ChartParts:
    """What the demo takes from the chart, and what it leaves (with the reason printed)."""

    crds: list[Doc]
    rbac: list[Doc]
    operator_args: list[str]
    service_account: str
    namespace: str
    skipped: list[str] = field(default_factory=list)


def chart_parts(docs: Sequence[Doc], *, namespace: str) -> ChartParts:
    """CRDs, the operator's RBAC objects and arguments, from ``helm template`` output."""
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if len(deployments) != 1 or not crds:
        raise waiting.DemoError(
            f"helm template gave {len(deployments)} Deployments and {len(crds)} CRDs"
            " (expected the operator's Deployment and the Pilothouse CRDs)"
        )
    pod = deployments[0]["spec"]["template"]["spec"]
    account = pod.get("serviceAccountName")
    if not account:
        raise waiting.DemoError("the chart's operator Deployment names no serviceAccountName")
    # The operator's own objects: its ServiceAccount, and the roles and bindings naming it.
    bindings = [
        d
        for d in docs
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(s.get("name") == account for s in d.get("subjects", []))
    ]
    roles = {b["roleRef"]["name"] for b in bindings}
    rbac = [
        d
        for d in docs
        if (d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account)
        or (d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"] in roles)
    ] + bindings
    if not bindings:
        raise waiting.DemoError(f"the chart binds no role to the ServiceAccount {account}")
    taken = {id(d) for d in (*crds, *rbac)}
    skipped = sorted({f"{d['kind']} {d['metadata']['name']}" for d in docs if id(d) not in taken})
    return ChartParts(
        crds=crds,
        rbac=sorted(rbac, key=lambda d: _RBAC_KINDS.index(d["kind"])),
        operator_args=list(pod["containers"][0].get("args", [])),
        service_account=account,
        namespace=namespace,
        skipped=skipped,
    )


def operator_argv(
    chart_args: Sequence[str], *, liveness_port: int, metrics_port: int, extra: Sequence[str]
) -> list[str]:
    """The chart's operator arguments with local ports, then the demo's own."""
    kept = [a for a in chart_args if not a.startswith(_PORT_FLAGS)]
    return [*kept, f"--liveness-port={liveness_port}", f"--metrics-port={metrics_port}", *extra]


def caller_rbac(caller: str, agent: str, namespace: str, role: str) -> list[Doc]:
    """The ServiceAccount ``caller`` and a Role (plus its binding) that let it send requests to
    ``agent`` and read their results and decision history: what a team grants a chat front end
    with plain RBAC when callers authenticate with Kubernetes tokens."""
    rbac = "rbac.authorization.k8s.io"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": caller}},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": ["pilothouse.dev"],
                    "resources": ["agentdeployments/requests", "agentdeployments/history"],
                    "resourceNames": [agent],
                    "verbs": ["create", "get"],
                }
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{caller}-calls-{agent}"},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": caller, "namespace": namespace}],
        },
    ]


def token_kubeconfig(*, server: str, ca_data: str, token: str, user: str) -> str:
    """A kubeconfig that authenticates with a bearer token (``ca_data``: base64 PEM)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "demo", "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "demo", "user": user}}],
        "current-context": user,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _env_entries(deployment: Doc) -> list[Doc]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    entries: list[Doc] = containers[0].get("env", [])
    return entries


def secret_refs(deployment: Doc) -> list[tuple[str, str]]:
    """The (Secret, key) pairs the runtime container's env reads, in order, once each."""
    refs = []
    for entry in _env_entries(deployment):
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref and (ref["name"], ref["key"]) not in refs:
            refs.append((ref["name"], ref["key"]))
    return refs


def pod_env(deployment: Doc, secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The runtime container's environment as the kubelet would set it.

    ``secrets`` maps Secret name -> decoded data. A missing Secret or key is an error, as it is
    for the kubelet (the pod would not start).
    """
    env: dict[str, str] = {}
    for entry in _env_entries(deployment):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise waiting.DemoError(
                f"env {entry['name']}: only values and secretKeyRefs are supported"
            )
        try:
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
        except KeyError:
            raise waiting.DemoError(
                f"env {entry['name']}: Secret {ref['name']} has no key {ref['key']!r}"
            ) from None
    return env
