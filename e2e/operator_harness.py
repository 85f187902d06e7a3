"""Harness of the operator's end-to-end tests: the real operator process against the real cluster.

``running_operator`` installs the CRDs from ``crds/`` and runs ``pilothouse-operator`` (the
console entry point, via ``python -m pilothouse.operator.cli``) as a child process with the
cluster's kubeconfig; it can be killed (SIGKILL, as a crashed pod) and started again.
``agent_namespace`` gives a test a namespace and, before the namespace goes, deletes its
AgentDeployments while the operator still runs (they carry the operator's finalizer).

Every wait is deadline-bound (:func:`polling.wait_until`); nothing sleeps and hopes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cluster.launcher import Cluster
from polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
EXAMPLES = CRDS / "examples"
GROUP = "pilothouse.dev"
START_TIMEOUT = 60.0
# Fast loops for tests: decisions every second, nothing waits for a 5-minute resync.
DEFAULT_ARGS = (
    "--autoscale-interval=1",
    "--watch-server-timeout=60",
    "--watch-client-timeout=70",
    "--redis-cleanup-timeout=5",  # agents of tests often name a Redis nobody runs
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_crds(cluster: Cluster) -> None:
    """Apply the generated CRDs and wait until the API server serves both kinds."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for plural in ("agentdeployments", "agentpolicies"):
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s"
        )
    wait_until(
        lambda: cluster.kubectl("get", "agd,agp", "-A", check=False).returncode,
        lambda rc: rc == 0,
        what="the pilothouse kinds to be served",
    )


class OperatorProcess:
    """``pilothouse-operator`` as a child process; start, kill, stop, read its metrics."""

    def __init__(
        self, cluster: Cluster, *, log_dir: Path, args: Sequence[str] = (), redis_url: str | None
    ) -> None:
        self.cluster = cluster
        self.log_path = log_dir / "operator.log"
        self.args = [*DEFAULT_ARGS, *args]
        self.redis_url = redis_url
        self.health_port = _free_port()
        self.metrics_port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = START_TIMEOUT) -> OperatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "pilothouse.operator.cli",
            "--all-namespaces",
            *(() if any(a.startswith("--peering=") for a in self.args) else ("--standalone",)),
            f"--liveness-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            *self.args,
        ]
        if self.redis_url:
            cmd.append(f"--redis-url={self.redis_url}")
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "POD_ID": f"e2e-operator-{uuid.uuid4().hex[:6]}",
        }
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        wait_until(self._healthy, bool, what="the operator's /healthz", timeout=timeout)
        return self

    def _healthy(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise AssertionError(
                f"the operator exited ({self._proc.returncode}):\n{self.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL, as the kubelet does to a crashed or evicted pod: no cleanup at all."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_operator(
    cluster: Cluster, log_dir: Path, *, args: Sequence[str] = (), redis_url: str | None = None
) -> Iterator[OperatorProcess]:
    """CRDs installed and the operator running for the duration of the block."""
    install_crds(cluster)
    proc = OperatorProcess(cluster, log_dir=log_dir, args=args, redis_url=redis_url).start()
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def agent_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace; its agents are deleted (with the operator still running) at the end."""
    name = f"e2e-op-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # Generous: on a busy machine the operator takes a while to release its finalizers.
        cluster.kubectl(
            "delete", "agd,agp", "--all", "-n", name, "--timeout=180s", check=False, timeout=240
        )
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --------------------------------------------------------------------------------- helpers


def apply(cluster: Cluster, namespace: str, *documents: dict[str, Any]) -> None:
    """kubectl apply the documents into the namespace."""
    items = {"apiVersion": "v1", "kind": "List", "items": list(documents)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(items))


def get(
    cluster: Cluster, kind: str, name: str, namespace: str, *extra: str
) -> dict[str, Any] | None:
    """One object as JSON (extra kubectl args allowed), or None when it does not exist."""
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", *extra, check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {kind} {name}: {result.stderr}")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def items(cluster: Cluster, kind: str, namespace: str, *args: str) -> list[dict[str, Any]]:
    """Objects of a kind in a namespace (extra kubectl args, e.g. a label selector)."""
    out = cluster.kubectl("get", kind, "-n", namespace, *args, "-o", "json").stdout
    found: list[dict[str, Any]] = json.loads(out)["items"]
    return found


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The status condition of this type ({} when absent)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found: dict[str, Any] = cond
            return found
    return {}


def wait_for_agent(
    cluster: Cluster,
    namespace: str,
    name: str,
    predicate: Any,
    *,
    what: str,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll the AgentDeployment until ``predicate(obj)`` holds; return it."""
    found: dict[str, Any] = wait_until(
        lambda: get(cluster, "agd", name, namespace) or {},
        predicate,
        what=f"agd/{name}: {what}",
        timeout=timeout,
    )
    return found


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the current generation (kstatus' reading)."""
    ready = condition(obj, "Ready")
    generation = obj.get("metadata", {}).get("generation")
    return (
        ready.get("status") == "True"
        and obj.get("status", {}).get("observedGeneration") == generation
    )


def agent_manifest(
    name: str, spec: dict[str, Any], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """An AgentDeployment document."""
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": meta,
        "spec": spec,
    }


def policy_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An AgentPolicy document."""
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def redis_secret(url: str, name: str = "agent-redis") -> dict[str, Any]:
    """A Secret holding a Redis URL under ``url``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"url": url},
    }


def small_agent(name: str, **spec: Any) -> dict[str, Any]:
    """A minimal valid agent (mock LLM endpoint, Redis from ``agent-redis``, no audit)."""
    body: dict[str, Any] = {
        "agent": {
            "systemPrompt": "You help.",
            "model": {"endpoint": "http://mock-llm.invalid/v1", "name": "mock-llm"},
        },
        "redis": {"urlSecretRef": {"name": "agent-redis", "key": "url"}},
        "audit": {"enabled": False},
    }
    body.update(spec)
    return agent_manifest(name, body)
