"""Start and stop a real Kubernetes control plane as local processes.

Pilothouse's end-to-end tests and demo need a real API server (CRD schemas and CEL rules,
RBAC, garbage collection, the scale subresource), but no container runtime: etcd,
kube-apiserver, kube-controller-manager and kube-scheduler run as plain processes on free
loopback ports, and KWOK plays the kubelet of N fake nodes, so scheduled pods become
Running and Ready without running anything.

Everything lives in a state directory (default ``.cache/cluster/``): certificates, the
admin kubeconfig, etcd's data (wiped on every start), one log file per component and the
pid file. ``stop()`` (also run at exit and on SIGTERM/SIGHUP) and ``down`` end the
processes; the next ``up`` or ``down`` ends what a crashed run left behind.

Command line::

    python3 e2e/cluster/launcher.py build|promtool|up|down|status [--state-dir DIR] [--nodes N]

From Python (see e2e/conftest.py)::

    cluster = Cluster(nodes=3).start()
    cluster.kubectl("get", "nodes")
    cluster.stop()
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `cluster` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster import binaries, pki, processes

DEFAULT_STATE_DIR = binaries.REPO_ROOT / ".cache" / "cluster"
DEFAULT_NODES = 3
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
POD_CIDR = "10.244.0.0/16"  # KWOK hands out pod IPs from here; must not overlap services
ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_LEASE_SECONDS = 40
NODE_RESOURCES = {"cpu": "32", "memory": "256Gi", "pods": "110"}
START_TIMEOUT = 120.0
STOP_GRACE = 10.0
# Stopped batch by batch: clients first (they would only log errors while the API server
# goes away), then the API server, then etcd. Started in the reverse order.
STOP_ORDER = (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",))
COMPONENTS = tuple(name for batch in STOP_ORDER for name in batch)

Log = Callable[[str], None]
# klog errors (E1126 ...), cobra's "Error: ...", etcd's JSON, KWOK's slog.
_ERROR_LINE = re.compile(r'^[EF]\d{4} |^Error: |"level":"(error|fatal|panic)"|level=(ERROR|FATAL)')


class ClusterError(RuntimeError):
    """A component failed to start, or the cluster is not in the expected state."""


class Cluster:
    """A local control plane (or, via ``existing()``, a cluster someone else runs)."""

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        nodes: int = DEFAULT_NODES,
        *,
        versions: binaries.Versions | None = None,
        bin_dir: Path | None = None,
        log: Log = print,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.nodes = nodes
        self.versions = versions or binaries.read_versions()
        self.bin_dir = bin_dir or binaries.bin_dir(self.versions)
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.log = log
        self._owns_processes = True
        self._ports: dict[str, int] = {}
        self._pki = pki.PKI(self.state_dir / "pki")
        self._groups = processes.ProcessGroups(self.state_dir / "pids.json", str(self.state_dir))

    @classmethod
    def existing(cls, kubeconfig: Path | str, *, log: Log = print) -> Cluster:
        """Wrap a running cluster (e.g. kind): start() and stop() leave it alone.

        kubectl and helm are the ones built here when present, else those on PATH.
        """
        cluster = cls(log=log)
        cluster.kubeconfig = Path(kubeconfig).resolve()
        cluster._owns_processes = False
        on_path = shutil.which("kubectl")
        if not cluster.kubectl_path.exists() and on_path:
            cluster.bin_dir = Path(on_path).parent
        return cluster

    # ---- for callers -----------------------------------------------------------------

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def helm_path(self) -> Path:
        path = self.bin_dir / "helm"
        on_path = shutil.which("helm")
        return Path(on_path) if not path.exists() and on_path else path

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._ports['kube-apiserver']}"

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (as admin unless another kubeconfig is given).

        Raises CalledProcessError on a non-zero exit when check is true.
        """
        return subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing here and the binaries first on PATH."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, *, timeout: float = START_TIMEOUT, keep_running: bool = False) -> Cluster:
        """Start everything and wait until the nodes are Ready; stop again on any failure.

        keep_running=True (the ``up`` command) lets the processes outlive this Python
        process; otherwise they die with it, and stop() also runs at exit.
        """
        if not self._owns_processes:
            return self
        if not binaries.is_built(self.versions):
            binaries.build(self.versions, log=self.log)
        self.stop()  # whatever a previous run left in this state directory
        started = time.monotonic()
        deadline = started + timeout
        if not keep_running:
            atexit.register(self.stop)
            processes.install_exit_signal_handlers()
        try:
            self._prepare()
            for name, args, health in self._components():
                self._spawn(name, args, die_with_parent=not keep_running)
                if name in ("etcd", "kube-apiserver"):  # the others need these to start
                    self._wait(name, health, deadline)
            for name, _, health in self._components():
                self._wait(name, health, deadline)
            self._register_nodes()
            self._wait("kwok", self._nodes_ready, deadline)
            self._wait("kube-controller-manager", self._default_service_account, deadline)
        except BaseException:
            self.stop()
            raise
        elapsed = time.monotonic() - started
        self.log(f"cluster up in {elapsed:.1f}s with {self.nodes} nodes: {self.kubeconfig}")
        return self

    def stop(self) -> None:
        """End every process this cluster (or an earlier run in its state dir) started."""
        if self._owns_processes:
            self._groups.terminate(STOP_ORDER, STOP_GRACE)

    def status(self) -> dict[str, Any]:
        info = self._read_info()
        ready = False
        if info.get("ports"):
            self._ports = info["ports"]
            with contextlib.suppress(OSError, ValueError, ssl.SSLError):
                ready = self._get("https", "kube-apiserver", "/readyz", client=True) == b"ok"
        return {
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "apiserver_ready": ready,
            "components": self._groups.states(),
            **info,
        }

    # ---- start-up steps ----------------------------------------------------------------

    def _read_info(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "cluster.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def _prepare(self) -> None:
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)  # a fresh cluster
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        self.logs_dir.mkdir(parents=True)
        self._pki = pki.ensure(self.state_dir / "pki", SERVICE_IP)
        self._ports = {n: processes.free_port() for n in (*COMPONENTS, "etcd-peer")}
        shutil.copyfile(binaries.kwok_stages_file(self.versions), self.state_dir / "kwok.yaml")
        admin_user = pki.CLIENTS["admin"][0]
        self.kubeconfig.write_text(
            pki.kubeconfig(self.server, self._pki.ca_cert, self._pki.client("admin"), admin_user)
        )
        self.kubeconfig.chmod(0o600)
        for name in ("kube-controller-manager", "kube-scheduler"):
            config = pki.kubeconfig(self.server, self._pki.ca_cert, self._pki.client(name), name)
            (self.state_dir / f"{name}.kubeconfig").write_text(config)
        info = {"server": self.server, "ports": self._ports, "nodes": self.nodes}
        (self.state_dir / "cluster.json").write_text(json.dumps(info, indent=2))

    def _components(self) -> list[tuple[str, list[str], Callable[[], bool]]]:
        """(name, arguments, health check) of each component, in start order."""
        p, state, ports = self._pki, self.state_dir, self._ports
        etcd = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            (
                "etcd",
                [
                    "--name=pilothouse",
                    f"--data-dir={state / 'etcd'}",
                    f"--listen-client-urls={etcd}",
                    f"--advertise-client-urls={etcd}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=pilothouse={peer}",
                    "--unsafe-no-fsync=true",  # throwaway data: durability buys nothing here
                    "--log-level=warn",
                ],
                lambda: b'"true"' in self._get("http", "etcd", "/health"),
            ),
            (
                "kube-apiserver",
                [
                    f"--etcd-servers={etcd}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={ports['kube-apiserver']}",
                    f"--cert-dir={state / 'kube-apiserver'}",
                    f"--tls-cert-file={p.serving.cert}",
                    f"--tls-private-key-file={p.serving.key}",
                    f"--client-ca-file={p.ca_cert}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--service-account-issuer={ISSUER}",
                    f"--service-account-key-file={p.sa_pub}",
                    f"--service-account-signing-key-file={p.sa_key}",
                    "--authorization-mode=Node,RBAC",
                    "--allow-privileged=true",
                    "--profiling=false",
                ],
                lambda: self._get("https", "kube-apiserver", "/readyz", client=True) == b"ok",
            ),
            (
                "kube-controller-manager",
                [
                    f"--kubeconfig={state / 'kube-controller-manager.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports['kube-controller-manager']}",
                    f"--cert-dir={state / 'kube-controller-manager'}",
                    f"--service-account-private-key-file={p.sa_key}",
                    f"--root-ca-file={p.ca_cert}",
                    "--use-service-account-credentials=true",
                    f"--cluster-signing-cert-file={p.ca_cert}",
                    f"--cluster-signing-key-file={p.ca_key}",
                    "--controllers=*",  # the default set, garbage collector included
                    "--leader-elect=false",
                    "--cluster-name=pilothouse",
                    "--profiling=false",
                ],
                lambda: self._get("https", "kube-controller-manager", "/healthz") == b"ok",
            ),
            (
                "kube-scheduler",
                [
                    f"--kubeconfig={state / 'kube-scheduler.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports['kube-scheduler']}",
                    f"--cert-dir={state / 'kube-scheduler'}",
                    "--leader-elect=false",
                    "--profiling=false",
                ],
                lambda: self._get("https", "kube-scheduler", "/healthz") == b"ok",
            ),
            (
                "kwok",
                [
                    f"--kubeconfig={self.kubeconfig}",
                    f"--config={state / 'kwok.yaml'}",
                    "--manage-all-nodes=true",
                    f"--cidr={POD_CIDR}",
                    "--node-ip=127.0.0.1",
                    f"--node-port={ports['kwok']}",
                    f"--server-address=127.0.0.1:{ports['kwok']}",
                    f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
                ],
                lambda: self._get("http", "kwok", "/healthz") == b"ok",
            ),
        ]

    def _spawn(self, name: str, args: Sequence[str], *, die_with_parent: bool) -> None:
        self._groups.spawn(
            name,
            [str(self.bin_dir / name), *args],
            log_file=self.logs_dir / f"{name}.log",
            cwd=self.state_dir,
            die_with_parent=die_with_parent,
        )

    def _wait(self, name: str, healthy: Callable[[], bool], deadline: float) -> None:
        """Poll healthy() until it holds; fail fast if the process exits, or at deadline."""
        while True:
            code = self._groups.exit_code(name)
            if code is not None:
                raise ClusterError(f"{name} exited with code {code}\n{self._tail(name)}")
            with contextlib.suppress(OSError, ValueError, ssl.SSLError, urllib.error.URLError):
                if healthy():
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} was not ready in time\n{self._tail(name)}")
            time.sleep(0.1)

    def _tail(self, name: str, lines: int = 25) -> str:
        """The first error lines and the last lines of a component's log (usage text hides
        the error that caused it)."""
        path = self.logs_dir / f"{name}.log"
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in text if _ERROR_LINE.search(line)][:5]
        return "\n".join(
            [f"--- errors in {path} ---", *errors, "--- last lines ---", *text[-lines:]]
        )

    def _ssl(self, client: bool) -> ssl.SSLContext:
        if not client:  # components' self-signed serving certs: only liveness is checked
            return ssl._create_unverified_context()
        ctx = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        admin = self._pki.client("admin")
        ctx.load_cert_chain(admin.cert, admin.key)
        return ctx

    def _get(self, scheme: str, name: str, path: str, *, client: bool = False) -> bytes:
        url = f"{scheme}://127.0.0.1:{self._ports[name]}{path}"
        ctx = self._ssl(client) if scheme == "https" else None
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            body: bytes = resp.read()
        return body

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.server + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=self._ssl(True)) as resp:
            return json.loads(resp.read())

    def _register_nodes(self) -> None:
        """Create the Node objects; KWOK (--manage-all-nodes) makes them Ready."""
        for i in range(self.nodes):
            name = f"kwok-node-{i}"
            labels = {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            }
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
                "status": {"allocatable": NODE_RESOURCES, "capacity": NODE_RESOURCES},
            }
            self._api("POST", "/api/v1/nodes", node)

    def _nodes_ready(self) -> bool:
        ready = [
            node
            for node in self._api("GET", "/api/v1/nodes")["items"]
            for c in node.get("status", {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        return len(ready) >= self.nodes

    def _default_service_account(self) -> bool:
        """Pods can only be created once the ServiceAccount controller made `default`."""
        return bool(self._api("GET", "/api/v1/namespaces/default/serviceaccounts/default"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=("build", "promtool", "up", "down", "status"))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    parser.add_argument("--force", action="store_true", help="build: rebuild even if current")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.command == "build":
            print(binaries.build(force=args.force, log=log))
            return 0
        if args.command == "promtool":
            print(binaries.build_promtool(force=args.force, log=log))
            return 0
        cluster = Cluster(args.state_dir, args.nodes, log=log)
        if args.command == "up":
            cluster.start(keep_running=True)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            cluster.stop()
        else:
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status["apiserver_ready"] else 1
    except (ClusterError, binaries.BuildError, pki.PKIError) as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
