"""Pilothouse on a real node: the image as pods, the operator from the chart, agents that serve.

The session fixture ``real_stack`` (e2e/conftest.py) builds one :class:`RealStack` for all the
real-pod tests (``test_real_pods_*``): a control plane with one real node (``e2e/cluster``,
``real_nodes=1``), the project image built as the image tests build it and imported into the
node, Redis, PostgreSQL, the mock LLM and the tool server listening on the host's address on
the node's link (``cluster.host_address``: pods reach them there), and ``helm install`` of the
chart, which runs the operator as a real pod under its ServiceAccount. Each test then applies
``crds/examples/`` (pointed at those services, like the demo does) into a namespace of its own
and talks to the agent through its Service's ClusterIP, which the host routes to the node's
kube-proxy, as the ServiceAccount ``e2e-caller`` of that namespace: the examples authenticate
callers with Kubernetes tokens, so :meth:`RealStack.service_url` grants that account a Role to
send requests and read their history and ``request`` sends its token to that URL.

Where the machine cannot run real pods (not root, no cgroups, ...) the fixture skips with the
reason; ``PILOTHOUSE_TEST_REAL_PODS=1`` turns that into a failure (CI), ``=0`` skips always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_chart
import images
import yaml
from cluster import launcher, nodes
from demo import manifests
from polling import wait_until

from pilothouse.runtime import devservers, mockllm
from pilothouse.runtime.evaluation import datasets, toolserver

MODE_ENV = "PILOTHOUSE_TEST_REAL_PODS"
EXAMPLES = helm_chart.REPO_ROOT / "crds" / "examples"
RELEASE = "pilothouse"
OPERATOR_NAMESPACE = "pilothouse-system"
AGENT = "customer-support"
SCENARIO = "customer_support_v1"
SCALE_DOWN_WINDOW = 10
READY_TIMEOUT = 180.0
RUNTIME_PORT = 8080
CALLER = "e2e-caller"
Doc = dict[str, Any]

_CALLERS: dict[str, dict[str, str]] = {}
"""Authorization header per agent Service URL (from :meth:`RealStack.service_url`)."""


class Unavailable(Exception):
    """This machine cannot run real pods; the message says why."""


@dataclasses.dataclass
class RealStack:
    """Everything the real-pod tests share; see the module docstring."""

    cluster: launcher.Cluster
    helm: helm_chart.Helm
    redis: devservers.RedisServer
    postgres: devservers.PostgresServer
    llm: mockllm.MockLLMProcess
    tools: toolserver.ToolServerProcess
    local: manifests.LocalServices
    image: str

    # ---- kubectl ---------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=120).stdout

    def get(self, kind: str, name: str, namespace: str) -> Doc:
        doc: Doc = json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json"))
        return doc

    def pods(self, namespace: str, selector: str) -> list[Doc]:
        out = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        items: list[Doc] = json.loads(out)["items"]
        return items

    def apply(self, docs: list[Doc], namespace: str | None = None) -> None:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=yaml.safe_dump_all(docs))

    # ---- agents ----------------------------------------------------------------------

    def examples(self, **overrides: Any) -> list[Doc]:
        """crds/examples/ pointed at this stack's services (the demo's transformation)."""
        docs: list[Doc] = []
        for path in sorted(EXAMPLES.glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
        pointed, _ = manifests.point_examples_at(docs, self.local)
        for doc in pointed:
            if doc["kind"] == "AgentDeployment":
                doc["spec"].update(overrides)
        return pointed

    @contextlib.contextmanager
    def namespace(self, labels: dict[str, str] | None = None) -> Iterator[str]:
        """A fresh namespace, deleted afterwards (its pods stop with it)."""
        name = f"real-{uuid.uuid4().hex[:8]}"
        ns: Doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            ns["metadata"]["labels"] = labels
        self.apply([ns])
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)

    def wait_ready(self, namespace: str, name: str = AGENT) -> Doc:
        """The AgentDeployment Ready and every pod of its Deployment Ready with a container."""

        def state() -> Doc:
            return self.get("agd", name, namespace)

        agent = wait_until(state, is_ready, what=f"agd/{name} Ready", timeout=READY_TIMEOUT)
        wait_until(
            lambda: self.get("deployment", name, namespace),
            rolled_out,
            what=f"deployment/{name} rolled out",
            timeout=READY_TIMEOUT,
        )
        return agent

    def service_url(self, namespace: str, name: str = AGENT) -> str:
        """http://<ClusterIP>:<port> of the agent's Service (routed by the node's kube-proxy);
        :func:`request` calls it as the namespace's ``e2e-caller`` ServiceAccount."""
        service = self.get("service", name, namespace)
        port = service["spec"]["ports"][0]["port"]
        url = f"http://{service['spec']['clusterIP']}:{port}"
        _CALLERS[url] = {"Authorization": f"Bearer {self.caller_token(namespace, name)}"}
        return url

    def caller_token(self, namespace: str, agent: str = AGENT) -> str:
        """A token of ``e2e-caller``, allowed (plain RBAC) to send requests to ``agent`` and
        read every result and decision history."""
        self.apply(
            manifests.caller_rbac(CALLER, agent, namespace, f"{agent}-e2e-callers"), namespace
        )
        return self.kubectl("create", "token", CALLER, "-n", namespace, "--duration=2h").strip()

    def operator_pods(self) -> list[Doc]:
        return self.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator")


def is_ready(agent: Doc) -> bool:
    conditions = (agent.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def rolled_out(deployment: Doc) -> bool:
    spec, status = deployment["spec"], deployment.get("status") or {}
    want = spec.get("replicas", 1)
    return (
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == want
        and status.get("readyReplicas") == want
        and status.get("replicas") == want
    )


def request(url: str, body: Doc | None = None, *, timeout: float = 60) -> tuple[int, Doc]:
    """One HTTP call with a JSON body (POST) or none (GET); (status, JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(next((h for base, h in _CALLERS.items() if url.startswith(base)), {}))
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def request_retrying(
    url: str, body: Doc, *, attempts: int = 3, timeout: float = 60
) -> tuple[int, Doc]:
    """POST ``body`` (which names its ``request_id``), sent again when no answer comes in time:
    the same id is the same request, so a retry never makes a second one."""
    assert body.get("request_id"), "only a request with its own id may be sent again"
    for attempt in range(1, attempts + 1):
        try:
            return request(url, body, timeout=timeout)
        except (urllib.error.URLError, TimeoutError):
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def ask(base: str, text: str, *, session: str | None = None) -> Doc:
    """POST /v1/requests?wait=30 through the Service; the finished request."""
    body: Doc = {"input": text}
    if session:
        body["session_id"] = session
    status, answer = request(f"{base}/v1/requests?wait=30", body)
    assert status == 200, (status, answer)
    return answer


# ---- building the stack ------------------------------------------------------------------


def check_machine() -> None:
    """Raise Unavailable with the reason when real pods cannot run here."""
    if os.environ.get(MODE_ENV) == "0":
        raise Unavailable(f"{MODE_ENV}=0")
    if os.environ.get("PILOTHOUSE_TEST_KUBECONFIG"):
        raise Unavailable("PILOTHOUSE_TEST_KUBECONFIG is set: the real-pod tests start their own")
    reason = nodes.unavailable_reason()
    if reason is not None:
        raise Unavailable(reason)


def _log(message: str) -> None:
    print(f"[real_stack] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def real_stack(state_dir: Path, workdir: Path) -> Iterator[RealStack]:
    """Start everything (see the module docstring); stop it all on exit, in reverse."""
    check_machine()
    with contextlib.ExitStack() as stack:
        try:
            started_docker = images.ensure_docker()
            image = images.build()
            archive = images.save(image)
        except images.ImageError as e:
            raise Unavailable(f"the image cannot be built here: {e}") from e
        if started_docker:
            stack.callback(images.stop_docker)
        cluster = launcher.Cluster(state_dir, nodes=0, real_nodes=1, log=_log)
        stack.callback(cluster.stop)
        cluster.start()
        if cluster.fallback_reason:
            raise Unavailable(cluster.fallback_reason)
        cluster.load_image(archive)
        host = cluster.host_address
        redis = stack.enter_context(devservers.RedisServer(host=host)).start()
        postgres = stack.enter_context(devservers.PostgresServer(host=host)).start()
        api_key = f"e2e-{secrets.token_hex(8)}"
        scenario = datasets.resolve(SCENARIO).with_name(f"{SCENARIO}.scenario.yaml")
        llm = mockllm.MockLLMProcess(scenario=scenario, api_key=api_key, seed=0, host=host)
        stack.callback(llm.stop)
        llm.start()
        tools = toolserver.ToolServerProcess(host=host)
        stack.callback(tools.stop)
        tools.start()
        local = manifests.LocalServices(
            llm_url=llm.url,
            llm_api_key=api_key,
            tools_url=tools.url,
            redis_url=redis.url,
            postgres_dsn=postgres.dsn,
            scale_down_window=SCALE_DOWN_WINDOW,
        )
        helm = helm_chart.helm(workdir / "helm").with_kubeconfig(cluster.kubeconfig)
        real = RealStack(cluster, helm, redis, postgres, llm, tools, local, image)
        install_chart(real)
        yield real


def install_chart(real: RealStack) -> None:
    """``helm install`` of the chart: the operator runs as the chart's Deployment's pod."""
    repository, tag = real.image.rsplit(":", 1)
    real.helm.run(
        "install", RELEASE, str(helm_chart.CHART_DIR), "-n", OPERATOR_NAMESPACE,
        "--create-namespace", "--wait", "--timeout=180s",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", "operator.extraArgs={--autoscale-interval=1}",
        timeout=300,
    )  # fmt: skip


def pod_metric(pod: Doc, name: str) -> float:
    """Sum of a metric's samples on one runtime pod (its pod IP is routed from the host)."""
    url = f"http://{pod['status']['podIP']}:{RUNTIME_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    )


def psql(stack: RealStack, sql: str) -> list[list[str]]:
    """Rows of a query against the audit trail's PostgreSQL (psql, unaligned)."""
    server = stack.postgres
    proc = subprocess.run(
        [str(server.bin_dir / "psql"), "-h", server.host, "-p", str(server.port), "-U",
         "postgres", "-d", server.database, "-At", "-F", "\t", "-c", sql],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"psql {sql!r} failed: {proc.stderr}")
    return [line.split("\t") for line in proc.stdout.splitlines()]
