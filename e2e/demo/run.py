"""The demo's first four steps: from nothing running to an agent answering on a local port.

1. The local stack: a Kubernetes control plane (``e2e/cluster``), Redis, PostgreSQL, the mock
   LLM (the ``customer_support_v1`` scenario) and the tool server.
2. The Helm chart's CRDs and RBAC, rendered with ``helm template`` and applied; the operator
   runs as a local process authenticated as the chart's ServiceAccount (a TokenRequest token), so
   every call it makes is checked against the chart's RBAC.
3. ``crds/examples/`` applied, pointed at the local services (see :mod:`demo.manifests`); the
   operator renders the runtime ConfigMap and the agent becomes Ready.
4. ``pilothouse serve`` run twice (API and workers) with the config read back from that
   ConfigMap and the environment the pod would get from its Secrets.

:func:`setup` runs them and returns the :class:`Agent` that steps 5-7 (:mod:`demo.scenes`) use.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from cluster import binaries

from demo import console, kube, manifests, stack, waiting
from pilothouse.runtime import config, devservers, testing
from pilothouse.runtime.evaluation import datasets

__all__ = ["AGENT", "NAMESPACE", "Agent", "Options", "setup"]

REPO: Final = binaries.REPO_ROOT
EXAMPLES: Final = REPO / "crds" / "examples"
CHART: Final = REPO / "charts" / "pilothouse"
RELEASE: Final = "pilothouse"
OPERATOR_NAMESPACE: Final = "pilothouse-system"
NAMESPACE: Final = "demo"
AGENT: Final = "customer-support"
SCENARIO: Final = "customer_support_v1"
READY_TIMEOUT: Final = 90.0
READY_HOLD: Final = 1.0
"""Ready must hold this long: right after the first rollout it can flip back for a moment."""
OPERATOR_EXTRA_ARGS: Final = ("--autoscale-interval=1",)
"""Decide every second (default 5) so the scale-up shows within a moment of the flood."""


@dataclass(frozen=True)
class Options:
    """How this run goes (the command line of :mod:`demo.cli`)."""

    workdir: Path
    state_dir: Path
    nodes: int
    flood: int
    window: int
    smoke: bool


@dataclass
class Agent:
    """What steps 5-7 need: the running agent and where everything is."""

    opts: Options
    out: console.Console
    kube: kube.Kube
    cfg: config.RuntimeConfig
    spec: dict[str, Any]
    api: testing.RuntimeProcess
    worker: testing.RuntimeProcess
    redis_url: str
    postgres_dsn: str
    tools_url: str
    headers: dict[str, str]
    """What the demo's callers send: the chat front end's ServiceAccount token."""


def setup(opts: Options, out: console.Console, procs: stack.Stack) -> Agent:
    """Steps 1-4."""
    local, cluster = _start_services(opts, out, procs)
    k = kube.Kube(cluster)
    _install_chart_and_operator(opts, out, procs, k, cluster)
    spec = _apply_examples(out, k, local, procs.logs / "operator.log")
    return _start_runtime(opts, out, procs, k, local, spec)


# ---------------------------------------------------------------------------------- step 1


def _start_services(
    opts: Options, out: console.Console, procs: stack.Stack
) -> tuple[manifests.LocalServices, Any]:
    out.step(
        "Start the local stack: Kubernetes control plane, Redis, PostgreSQL, mock LLM, tools",
        short="local stack",
    )
    log_file = opts.workdir / "logs" / "cluster.log"

    def to_file(message: str) -> None:
        with log_file.open("a") as f:
            f.write(message + "\n")

    versions = binaries.read_versions()
    building = not binaries.is_built(versions)
    if building:
        out.info("Building the Kubernetes binaries from Go modules: once, several minutes...")
    with out.timed() as t:
        cluster = procs.cluster(
            opts.state_dir, nodes=opts.nodes, log=out.note if building else to_file
        )
    out.done(
        "Kubernetes control plane",
        f"kube-apiserver {versions.kubernetes}, etcd, scheduler, controller-manager,"
        f" {opts.nodes} KWOK nodes",
        t[0],
    )
    with out.timed() as t:
        redis = procs.redis()
    out.done("Redis", redis.url, t[0])
    with out.timed() as t:
        postgres = procs.postgres()
    out.done("PostgreSQL", f"{postgres.dsn} (audit trail)", t[0])
    scenario = datasets.resolve(SCENARIO).with_name(f"{SCENARIO}.scenario.yaml")
    api_key = f"demo-{secrets.token_hex(8)}"
    with out.timed() as t:
        llm = procs.mock_llm(scenario=scenario, api_key=api_key)
    out.done("mock LLM", f"{llm.url} (OpenAI API, scenario {SCENARIO})", t[0])
    with out.timed() as t:
        tools = procs.tool_server()
    out.done("tool server", f"{tools.url} (weather_api, initiate_return)", t[0])
    local = manifests.LocalServices(
        llm_url=llm.url,
        llm_api_key=api_key,
        tools_url=tools.url,
        redis_url=redis.url,
        postgres_dsn=postgres.dsn,
        scale_down_window=opts.window,
    )
    return local, cluster


# ---------------------------------------------------------------------------------- step 2


def _helm_template(opts: Options, cluster: Any) -> list[dict[str, Any]]:
    home = opts.workdir / "helm"
    env = {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "PATH": "/usr/bin:/bin",
    }
    argv = [
        str(cluster.helm_path),
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--include-crds",
        "--set",
        "tests.enabled=false",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise waiting.DemoError(f"helm template failed: {result.stderr.strip()}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _install_chart_and_operator(
    opts: Options, out: console.Console, procs: stack.Stack, k: kube.Kube, cluster: Any
) -> None:
    out.step(
        "Install the Helm chart's CRDs and RBAC; run the operator as its ServiceAccount",
        short="chart and operator",
    )
    with out.timed() as t:
        parts = manifests.chart_parts(_helm_template(opts, cluster), namespace=OPERATOR_NAMESPACE)
        k.apply([_namespace(OPERATOR_NAMESPACE)])
        k.apply(parts.crds, server_side=True)
        k.established(parts.crds)
        k.apply(parts.rbac, namespace=OPERATOR_NAMESPACE)
    applied = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in parts.crds + parts.rbac)
    out.done(
        "CRDs and RBAC applied",
        f"helm template {RELEASE} charts/pilothouse -n {OPERATOR_NAMESPACE}",
        t[0],
    )
    out.info(applied)
    out.note(
        f"Not applied: {', '.join(parts.skipped)}. KWOK's nodes run no containers, so the"
        " operator runs here as a local process instead of that Deployment's pod."
    )
    with out.timed() as t:
        token = k.run(
            "create", "token", parts.service_account, "-n", OPERATOR_NAMESPACE, "--duration=2h"
        ).strip()
        server, ca = k.server_and_ca()
        user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{parts.service_account}"
        kubeconfig = opts.workdir / "operator.kubeconfig"
        kubeconfig.write_text(
            manifests.token_kubeconfig(server=server, ca_data=ca, token=token, user=user)
        )
        kubeconfig.chmod(0o600)
        who = json.loads(
            k.cluster.kubectl(
                "auth", "whoami", "-o", "json", kubeconfig=kubeconfig, check=True
            ).stdout
        )
    name = who.get("status", {}).get("userInfo", {}).get("username", "?")
    if name != user:
        raise waiting.DemoError(f"the operator's token authenticates as {name}, not {user}")
    out.done("ServiceAccount token", f"{name} (kubectl create token, auth whoami)", t[0])

    health, metrics = devservers.free_port(), devservers.free_port()
    argv = manifests.operator_argv(
        parts.operator_args, liveness_port=health, metrics_port=metrics, extra=OPERATOR_EXTRA_ARGS
    )
    with out.timed() as t:
        operator = procs.operator(argv, kubeconfig=kubeconfig, health_port=health)
    out.done("operator running", f"pid {operator.pid}, /healthz answers", t[0])
    out.info(f"$ pilothouse-operator {' '.join(argv)}")
    out.note(
        "The chart's arguments with local ports, deciding every second;"
        f" log: {_rel(operator.log_file)}"
    )


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


# ---------------------------------------------------------------------------------- step 3


def _apply_examples(
    out: console.Console, k: kube.Kube, local: manifests.LocalServices, operator_log: Path
) -> dict[str, Any]:
    out.step(
        f"Apply crds/examples/ to namespace {NAMESPACE}, pointed at the local services",
        short="examples to Ready",
    )
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    pointed, changes = manifests.point_examples_at(docs, local)
    for change in changes:
        out.info(f"· {change}")
    with out.timed() as t:
        k.apply([_namespace(NAMESPACE)])
        k.apply(pointed, namespace=NAMESPACE)
    kinds = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in pointed)
    out.done("examples applied", kinds, t[0])

    with out.timed() as t:
        agent = waiting.wait_for(
            lambda: k.get("agd", AGENT, NAMESPACE) or {},
            kube.is_ready,
            what=f"agd/{AGENT} Ready",
            timeout=READY_TIMEOUT,
            hold=READY_HOLD,
            describe=lambda a: (
                json.dumps((a.get("status") or {}).get("conditions"))
                + f"; the operator's log: {_rel(operator_log)}"
            ),
        )
    status = agent["status"]
    policies = ", ".join(p["name"] for p in status.get("appliedPolicies", []))
    out.done(
        f"agd/{AGENT} Ready",
        f"ConfigMap {AGENT}-runtime rendered with the policies {policies}",
        t[0],
    )
    out.block(k.show("get", "pilothouse", "-n", NAMESPACE))
    spec: dict[str, Any] = agent["spec"]
    return spec


# ---------------------------------------------------------------------------------- step 4


def _start_runtime(
    opts: Options,
    out: console.Console,
    procs: stack.Stack,
    k: kube.Kube,
    local: manifests.LocalServices,
    spec: dict[str, Any],
) -> Agent:
    out.step(
        "Run the agent's runtime (pilothouse serve) with the config the operator rendered",
        short="runtime",
    )
    configmap = k.get("configmap", f"{AGENT}-runtime", NAMESPACE)
    deployment = k.get("deployment", AGENT, NAMESPACE)
    if configmap is None or deployment is None:
        raise waiting.DemoError(f"the operator made no ConfigMap or Deployment for {AGENT}")
    text = configmap["data"]["runtime.yaml"]
    saved = opts.workdir / "runtime.yaml"
    saved.write_text(text)
    cfg = config.parse_config(yaml.safe_load(text), source=f"configmap/{AGENT}-runtime")
    out.info(f"· config: ConfigMap {AGENT}-runtime, key runtime.yaml (saved as {_rel(saved)})")
    headers: dict[str, str] = {}
    if cfg.server.kubernetes_auth.enabled:
        cfg, headers = _kubernetes_callers(opts, out, k, cfg)
    refs = manifests.secret_refs(deployment)
    found = {name: k.secret_data(name, NAMESPACE) for name, _ in refs}
    env = manifests.pod_env(deployment, found)
    out.info(
        "· env from the pod template's secretKeyRefs, resolved as the kubelet would: "
        + ", ".join(env)
    )
    with out.timed() as t:
        worker = procs.runtime(cfg, role="worker", env=env)
        api = procs.runtime(cfg, role="api", env=env)
    out.done("runtime API", f"pilothouse serve --role api: {api.url}", t[0])
    out.done(
        "runtime workers",
        f"pilothouse serve --role worker: {cfg.workers.concurrency} concurrent workers on the"
        " agent's Redis stream",
    )
    out.note(
        "A pod runs both roles in one process; here they are two, so step 7 can stop the"
        f" workers alone. Logs: {_rel(opts.workdir)}/runtime-*/runtime.log"
    )
    return Agent(
        opts=opts,
        out=out,
        kube=k,
        cfg=cfg,
        spec=spec,
        api=api,
        worker=worker,
        redis_url=local.redis_url,
        postgres_dsn=local.postgres_dsn,
        tools_url=local.tools_url,
        headers=headers,
    )


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


WORKDIR_MARKER: Final = ".pilothouse-demo"
"""In every folder the demo fills: only such a folder (or an empty one) is ever emptied."""


def clean_workdir(workdir: Path) -> None:
    """Remove what an earlier run left in the demo's folder (its logs, configs, helm home).

    A folder that is neither empty nor marked as the demo's is left alone: a mistyped
    ``--workdir`` must not delete someone's files.
    """
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / WORKDIR_MARKER).exists():
            raise waiting.DemoError(
                f"--workdir {workdir}: not empty and not a folder of an earlier demo run"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / WORKDIR_MARKER).write_text("made by make demo; emptied at each run\n")


CALLER: Final = "chat-frontend"
"""The ServiceAccount the demo's requests come from."""


def _kubernetes_callers(
    opts: Options, out: console.Console, k: kube.Kube, cfg: config.RuntimeConfig
) -> tuple[config.RuntimeConfig, dict[str, str]]:
    """Kubernetes authentication, as a pod gets it: the agent's ServiceAccount token and the
    cluster CA in files, the API server's address (what the kubelet and the kubernetes Service
    provide). And a caller: a ServiceAccount RBAC lets send requests and read their history."""
    server, ca_data = k.server_and_ca()
    ca = opts.workdir / "ca.crt"
    ca.write_bytes(base64.b64decode(ca_data))
    own = opts.workdir / "agent-token"
    own.write_text(k.run("create", "token", AGENT, "-n", NAMESPACE, "--duration=24h").strip())
    auth = cfg.server.kubernetes_auth.model_copy(
        update={"api_server": server, "token_file": str(own), "ca_file": str(ca)}
    )
    cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"kubernetes_auth": auth})})
    k.apply(
        manifests.caller_rbac(CALLER, AGENT, NAMESPACE, f"{AGENT}-callers"),
        namespace=NAMESPACE,
    )
    token = k.run("create", "token", CALLER, "-n", NAMESPACE, "--duration=24h").strip()
    out.info(
        f"· callers authenticate with Kubernetes tokens: ServiceAccount {CALLER} may send "
        f"requests and read their history (Role {AGENT}-callers); the operator let the "
        f"agent's ServiceAccount review them (ClusterRoleBinding pilothouse:reviews:"
        f"{NAMESPACE}:{AGENT})"
    )
    return cfg, {"Authorization": f"Bearer {token}"}
