"""Start and stop a real Kubernetes control plane as local processes.

Pilothouse's end-to-end tests and demo need a real API server (CRD schemas and CEL rules,
RBAC, garbage collection, the scale subresource): etcd, kube-apiserver,
kube-controller-manager and kube-scheduler run as plain processes on free ports, and KWOK
plays the kubelet of N fake nodes, so scheduled pods become Running and Ready without
running anything. With ``real_nodes`` (root on Linux), nodes that really run pods join
them: containerd, kubelet and kube-proxy in a network namespace per node (``nodes.py``);
the API server then listens on the host's address on the nodes' link, which pods reach.
When the machine cannot run real nodes, the launcher says why and starts KWOK nodes
instead.

Everything lives in a state directory (default ``.cache/cluster/``): certificates, the
admin kubeconfig, etcd's data (wiped on every start), one log file per component and the
pid file. ``stop()`` (also run at exit and on SIGTERM/SIGHUP) and ``down`` end the
processes; the next ``up`` or ``down`` ends what a crashed run left behind.

Command line::

    python3 e2e/cluster/launcher.py build|promtool|up|down|status [--state-dir DIR] [--nodes N]
        [--real-nodes N]
    python3 e2e/cluster/launcher.py load-image ARCHIVE [--state-dir DIR]

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

from cluster import binaries, nodefiles, nodes, pki, processes

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
MAX_REAL_NODES = 8
# Stopped batch by batch: clients first (they would only log errors while the API server
# goes away), then the API server, then etcd. Started in the reverse order. A real node's
# agents go first, then its containers (nodes.teardown), then its containerd.
NODE_AGENTS = tuple(
    f"{c}-{i}" for i in range(MAX_REAL_NODES) for c in ("kubelet", "kube-proxy", "coredns")
)
NODE_RUNTIMES = tuple(f"containerd-{i}" for i in range(MAX_REAL_NODES))
CONTROL_PLANE_STOP_ORDER = (
    ("kwok", "kube-scheduler", "kube-controller-manager"),
    ("kube-apiserver",),
    ("etcd",),
)
STOP_ORDER = (
    (*NODE_AGENTS, *CONTROL_PLANE_STOP_ORDER[0]),
    NODE_RUNTIMES,
    *CONTROL_PLANE_STOP_ORDER[1:],
)
COMPONENTS = tuple(name for batch in CONTROL_PLANE_STOP_ORDER for name in batch)

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
        real_nodes: int = 0,
    ) -> None:
        if not 0 <= real_nodes <= MAX_REAL_NODES:
            raise ClusterError(f"real_nodes must be 0..{MAX_REAL_NODES}, not {real_nodes}")
        self.state_dir = Path(state_dir).resolve()
        self.nodes = nodes
        self.real_nodes = real_nodes
        self.fallback_reason: str | None = None
        """Why real nodes were asked for but KWOK nodes run instead (None otherwise)."""
        self._slot: int | None = None
        self._api_host = "127.0.0.1"
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
        return f"https://{self._api_host}:{self._ports['kube-apiserver']}"

    @property
    def host_address(self) -> str:
        """Where pods on real nodes reach this host (services bound here serve them).

        127.0.0.1 without real nodes (KWOK pods run nothing that would connect).
        """
        if self._slot is None:
            return "127.0.0.1"
        return nodes.NodeNet(self._slot, 0).host_ip

    @property
    def real_node_names(self) -> list[str]:
        return [nodes.NodeNet(self._slot or 0, i).name for i in range(self.real_nodes)]

    def load_image(self, archive: Path) -> None:
        """Import a ``docker save``/OCI archive into every real node's containerd (k8s.io)."""
        if not self.real_nodes:
            raise ClusterError("load_image needs real nodes (KWOK nodes run no images)")
        for i in range(self.real_nodes):
            nodes.import_image(self.state_dir, i, Path(archive))

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
        if self.real_nodes:
            self._check_real_nodes()
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
            if self.nodes:
                self._register_nodes()
            for i in range(self.real_nodes):
                self._start_real_node(i, deadline, die_with_parent=not keep_running)
            self._wait("kwok" if self.nodes else "kube-apiserver", self._nodes_ready, deadline)
            self._wait("kube-controller-manager", self._default_service_account, deadline)
        except BaseException:
            self.stop()
            raise
        elapsed = time.monotonic() - started
        kinds = f"{self.nodes} KWOK" + (f" + {self.real_nodes} real" if self.real_nodes else "")
        self.log(f"cluster up in {elapsed:.1f}s with {kinds} nodes: {self.kubeconfig}")
        return self

    def stop(self) -> None:
        """End every process this cluster (or an earlier run in its state dir) started, and
        undo what its real nodes changed on the host."""
        if not self._owns_processes:
            return
        self._groups.terminate([STOP_ORDER[0]], STOP_GRACE)  # node agents, kwok, clients
        self._groups.terminate([STOP_ORDER[1]], STOP_GRACE)  # containerds
        nodes.teardown(self.state_dir, log=self.log)  # containers, mounts, netns, cgroups
        self._groups.terminate(STOP_ORDER[2:], STOP_GRACE)

    def status(self) -> dict[str, Any]:
        info = self._read_info()
        ready = False
        if info.get("ports"):
            self._ports = info["ports"]
            self._api_host = info.get("api_host", "127.0.0.1")
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
        clients: dict[str, tuple[str, str | None]] = {}
        if self.real_nodes:
            self._slot = nodes.allocate_slot(self.state_dir)
            self._api_host = nodes.NodeNet(self._slot, 0).host_ip
            for i in range(self.real_nodes):
                net = nodes.NodeNet(self._slot, i)
                nodes.setup_network(self.state_dir, net)
                nodes.setup_cgroups(net)
                clients[f"kubelet-{i}"] = (f"system:node:{net.name}", "system:nodes")
            clients["kube-proxy"] = ("system:kube-proxy", None)
        self._pki = pki.ensure(
            self.state_dir / "pki",
            self._service_ip,
            extra_ips=(self._api_host,) if self.real_nodes else (),
            clients=clients,
        )
        self._ports = {n: processes.free_port() for n in (*COMPONENTS, "etcd-peer")}
        if self.nodes:
            shutil.copyfile(binaries.kwok_stages_file(self.versions), self.state_dir / "kwok.yaml")
        admin_user = pki.CLIENTS["admin"][0]
        self.kubeconfig.write_text(
            pki.kubeconfig(self.server, self._pki.ca_cert, self._pki.client("admin"), admin_user)
        )
        self.kubeconfig.chmod(0o600)
        for name in ("kube-controller-manager", "kube-scheduler"):
            config = pki.kubeconfig(self.server, self._pki.ca_cert, self._pki.client(name), name)
            (self.state_dir / f"{name}.kubeconfig").write_text(config)
        info = {
            "server": self.server,
            "api_host": self._api_host,
            "ports": self._ports,
            "nodes": self.nodes,
            "real_nodes": self.real_nodes,
            "slot": self._slot,
            "host_address": self.host_address,
        }
        (self.state_dir / "cluster.json").write_text(json.dumps(info, indent=2))

    @property
    def _service_cidr(self) -> str:
        return SERVICE_CIDR if self._slot is None else nodes.service_cidr(self._slot)

    @property
    def _service_ip(self) -> str:
        return SERVICE_IP if self._slot is None else nodes.service_ip(self._slot)

    def _check_real_nodes(self) -> None:
        """Fall back to KWOK nodes, saying why, when this machine cannot run real ones."""
        reason = nodes.unavailable_reason()
        if reason is None:
            nodes.check_paths(self.state_dir)  # a usage error: say so rather than fall back
            try:
                nodes.ensure_packages(self.log)
                if not binaries.is_node_built(self.versions):
                    binaries.build_node(self.versions, log=self.log)
            except (nodes.NodeError, binaries.BuildError) as e:
                reason = str(e)
        if reason is not None:
            self.fallback_reason = reason
            self.log(
                f"real nodes are not possible here: {reason}; "
                f"starting {self.real_nodes} KWOK node(s) instead (pods will not run)"
            )
            self.nodes += self.real_nodes
            self.real_nodes = 0

    def _start_real_node(self, index: int, deadline: float, *, die_with_parent: bool) -> None:
        """containerd, the pause image, kubelet and kube-proxy of one node, in its netns."""
        assert self._slot is not None
        net = nodes.NodeNet(self._slot, index)
        kubeconfigs = {
            "kubelet": pki.kubeconfig(
                self.server, self._pki.ca_cert, self._pki.client(f"kubelet-{index}"), net.name
            ),
            "kube-proxy": pki.kubeconfig(
                self.server, self._pki.ca_cert, self._pki.client("kube-proxy"), "kube-proxy"
            ),
            "coredns": self.kubeconfig.read_text(),
        }
        dns_ip = nodes.NodeNet(self._slot, 0).node_ip
        paths = nodefiles.write_configs(
            self.state_dir, net, server=self.server, ca_cert=self._pki.ca_cert,
            kubeconfigs=kubeconfigs, dns_ip=dns_ip,
        )  # fmt: skip
        env = {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

        def spawn(name: str, argv: list[str]) -> None:
            self._groups.spawn(
                name, argv, log_file=self.logs_dir / f"{name}.log", cwd=self.state_dir,
                die_with_parent=die_with_parent, netns=net.netns_path, env=env,
            )  # fmt: skip

        spawn(f"containerd-{index}", ["containerd", "--config", str(paths["containerd"])])
        self._wait(f"containerd-{index}", lambda: self._containerd_ready(index), deadline)
        if nodes.PAUSE_IMAGE not in nodes.image_names(self.state_dir, index):
            archive = nodefiles.pause_image_archive(
                self.bin_dir / binaries.PAUSE, self.state_dir / "pause-image.tar"
            )
            nodes.import_image(self.state_dir, index, archive)
        nodes.record_host_sysctls(self.state_dir)
        spawn(
            f"kubelet-{index}",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={paths['kubelet']}",
                f"--kubeconfig={paths['kubelet-kubeconfig']}",
                f"--root-dir={nodes.node_dir(self.state_dir, index) / 'kubelet'}",
                f"--node-ip={net.node_ip}",
                f"--hostname-override={net.name}",
                "--node-labels=pilothouse.dev/node=real",
            ],
        )
        spawn(
            f"kube-proxy-{index}",
            [str(self.bin_dir / "kube-proxy"), f"--config={paths['kube-proxy']}"],
        )
        if index == 0:  # the cluster DNS, on node 0's address (kubelets' clusterDNS)
            spawn(
                "coredns-0", [str(self.bin_dir / binaries.COREDNS), "-conf", str(paths["coredns"])]
            )
        self._wait(
            f"kubelet-{index}",
            lambda: (
                self._get_url(f"http://{net.node_ip}:{nodes.KUBELET_HEALTHZ_PORT}/healthz") == b"ok"
            ),
            deadline,
        )
        self._wait(
            f"kube-proxy-{index}",
            lambda: (
                b"lastUpdated"
                in self._get_url(f"http://{net.node_ip}:{nodes.PROXY_HEALTHZ_PORT}/healthz")
            ),
            deadline,
        )
        if index == 0:
            self._wait(
                "coredns-0",
                lambda: self._get_url(f"http://{dns_ip}:{nodes.DNS_READY_PORT}/ready") == b"OK",
                deadline,
            )

    def _components(self) -> list[tuple[str, list[str], Callable[[], bool]]]:
        """(name, arguments, health check) of each component, in start order (KWOK only
        with KWOK nodes)."""
        return [c for c in self._all_components() if c[0] != "kwok" or self.nodes]

    def _all_components(self) -> list[tuple[str, list[str], Callable[[], bool]]]:
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
                    f"--bind-address={self._api_host}",
                    f"--advertise-address={self._api_host}",
                    f"--secure-port={ports['kube-apiserver']}",
                    f"--cert-dir={state / 'kube-apiserver'}",
                    f"--tls-cert-file={p.serving.cert}",
                    f"--tls-private-key-file={p.serving.key}",
                    f"--client-ca-file={p.ca_cert}",
                    f"--service-cluster-ip-range={self._service_cidr}",
                    # logs, exec, port-forward: the API server calls the kubelets as admin.
                    f"--kubelet-client-certificate={p.client('admin').cert}",
                    f"--kubelet-client-key={p.client('admin').key}",
                    "--kubelet-preferred-address-types=InternalIP",
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
                    f"--service-cluster-ip-range={self._service_cidr}",
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
                    # Only its own nodes: a real node's kubelet must not be taken over.
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
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

    def _containerd_ready(self, index: int) -> bool:
        if not nodes.containerd_socket(self.state_dir, index).exists():
            return False
        try:
            nodes.ctr(self.state_dir, index, "version")
        except nodes.NodeError:
            return False
        return True

    @staticmethod
    def _get_url(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
        return body

    def _get(self, scheme: str, name: str, path: str, *, client: bool = False) -> bytes:
        host = self._api_host if name == "kube-apiserver" else "127.0.0.1"
        url = f"{scheme}://{host}:{self._ports[name]}{path}"
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
        return len(ready) >= self.nodes + self.real_nodes

    def _default_service_account(self) -> bool:
        """Pods can only be created once the ServiceAccount controller made `default`."""
        return bool(self._api("GET", "/api/v1/namespaces/default/serviceaccounts/default"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "command", choices=("build", "promtool", "up", "down", "status", "load-image")
    )
    parser.add_argument("archive", nargs="?", type=Path, help="load-image: a docker save archive")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="KWOK nodes")
    parser.add_argument(
        "--real-nodes", type=int, default=0, help="nodes running real pods (root, Linux)"
    )
    parser.add_argument("--force", action="store_true", help="build: rebuild even if current")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.command == "build":
            print(binaries.build(force=args.force, log=log))
            if args.real_nodes:
                binaries.build_node(force=args.force, log=log)
            return 0
        if args.command == "promtool":
            print(binaries.build_promtool(force=args.force, log=log))
            return 0
        cluster = Cluster(args.state_dir, args.nodes, log=log, real_nodes=args.real_nodes)
        if args.command == "load-image":
            if args.archive is None:
                parser.error("load-image needs an ARCHIVE (docker save IMAGE -o ARCHIVE)")
            info = cluster.status()
            cluster.real_nodes = int(info.get("real_nodes") or 0)
            cluster.load_image(args.archive)
            return 0
        if args.command == "up":
            cluster.start(keep_running=True)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            cluster.stop()
        else:
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status["apiserver_ready"] else 1
    except (ClusterError, binaries.BuildError, pki.PKIError, nodes.NodeError) as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
