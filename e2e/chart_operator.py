"""Run the operator the way the chart's Deployment does, as a local process, for chart tests.

KWOK runs no containers, so where a chart test needs the operator pod to really run, it runs
``pilothouse-operator`` (the image's entry point, from this checkout) here: with the arguments
of the chart's Deployment, as the chart's ServiceAccount (a TokenRequest token in a kubeconfig
that holds nothing else), ``POD_ID`` set as the chart sets it. Only the two ports are its own,
so several can run side by side. Used by test_chart_rbac_is_least_privilege.py and
test_chart_installs_tests_and_uninstalls.py.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from cluster.launcher import Cluster

from pilothouse.runtime import devservers

# Fast loops for tests: decisions every second, watches renewed within a minute.
FAST_ARGS = (
    "--autoscale-interval=1",
    "--watch-server-timeout=60",
    "--watch-client-timeout=70",
    "--redis-cleanup-timeout=5",
)
OWN_PORT_FLAGS = ("--liveness-port", "--metrics-port")


@dataclasses.dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    health_port: int
    metrics_port: int
    log_path: Path

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log_tail()}")

    def healthy(self) -> bool:
        self.check_alive()
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def api_server(cluster: Cluster, workdir: Path) -> tuple[str, Path]:
    """The API server's URL and CA bundle, from the cluster's kubeconfig."""
    view = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    entry = view["clusters"][0]["cluster"]
    ca = workdir / "ca.crt"
    ca.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    return str(entry["server"]), ca


def service_account_token(cluster: Cluster, namespace: str, account: str) -> str:
    return cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig for the cluster's API server that authenticates with ``token`` only."""
    server, ca = api_server(cluster, path.parent)
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "c",
            }
        )
    )
    return path


@contextlib.contextmanager
def running(
    args: Sequence[str], kubeconfig: Path, workdir: Path, *, pod_id: str
) -> Iterator[OperatorProcess]:
    """``pilothouse-operator`` with the chart's ``args`` (own ports); SIGTERM at the end."""
    health, metrics = devservers.free_port(), devservers.free_port()
    kept = [a for a in args if not a.startswith(OWN_PORT_FLAGS)]
    cmd = [
        sys.executable, "-m", "pilothouse.operator.cli", *kept, *FAST_ARGS,
        f"--liveness-port={health}", f"--metrics-port={metrics}",
    ]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_ID": pod_id}
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster credentials
    log_path = workdir / f"{pod_id}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield OperatorProcess(proc, health, metrics, log_path)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
