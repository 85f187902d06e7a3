"""Real nodes for the local control plane: containerd, kubelet and kube-proxy, each node in its
own network namespace, and a complete clean-up of everything they change on the host.

KWOK nodes run nothing. A real node runs the pods the operator renders: its image, probes,
Secrets as environment, emptyDirs, Services. Called by ``launcher.Cluster`` when
``real_nodes`` > 0; nothing here talks to the API server.

Layout of one node (index ``i``) of the cluster in slot ``s`` (one slot per running cluster
with real nodes on this host, so several can run side by side)::

    host ── veth ph<s>n<i> 10.250.<s>.<4i+1>/30 ──┐   routes: services 10.<96+s>.0.0/16 via node 0,
                                                  │           pods 10.244.<8s+i>.0/24 via node i
    netns pilothouse-<s>-<i> ── eth0 10.250.<s>.<4i+2>/30 (the node IP, default route via host)
        containerd (own root, state, socket; CRI with restrict_oom_score_adj, cgroupfs)
        CNI bridge cni0 10.244.<8s+i>.1/24 (host-local IPAM, masquerade), kube-proxy (iptables)
        kubelet (cgroupRoot /pilothouse-<s>-<i>, root dir, pod logs in the state dir)

So iptables chains, the bridge, routes and the namespace's sysctls exist only inside the
node's namespace; deleting it removes them. What remains on the host is recorded in
``<state dir>/nodes.json`` before it is changed, and ``teardown()`` undoes it, also after a
crash (the next ``up`` or ``down`` of the same state directory): container processes (found
through the node's cgroups and the shims' sockets), mounts under the state directory
(overlay root file systems, Secret tmpfs, pod network namespaces:
``netns_mounts_under_state_dir``), the cgroups, the kubelet's kernel sysctls (it sets
``vm.overcommit_memory``, ``kernel.panic`` and others; being the host's, they are recorded
once for every cluster with real nodes in ``/run/pilothouse/host-sysctls.json`` and restored by
the last one to go), ``/var/log/containers`` links and CNI's cache entries.

Nothing can be pulled: ``nodefiles.pause_image_archive()`` makes the sandbox image from the
``pause`` binary (one layer, a ``docker save`` archive) and ``import_image()`` loads archives into
containerd's ``k8s.io`` namespace, where the kubelet finds them.

Requirements, checked by ``unavailable_reason()``: Linux, root, cgroups mounted, network
namespaces; containerd, runc, the CNI plugins and iptables are installed with apt-get when
missing (Debian's packages).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Log = Callable[[str], None]

APT_PACKAGES = {  # what must be on the host -> the Debian package that brings it
    "/usr/bin/containerd": "containerd",
    "/usr/sbin/runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/conntrack": "conntrack",
}
CNI_BIN_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/run/netns")
SLOT_LOCK = Path("/run/pilothouse-nodes.lock")
SOCKET_ROOT = Path("/run/pilothouse")
SYSCTL_RECORD = SOCKET_ROOT / "host-sysctls.json"
MAX_SOCKET_PATH = 100
MAX_NODE_INDEX = 7
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOGS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni/results")
MAX_SLOTS = 32
PAUSE_IMAGE = "localhost/pilothouse-pause:1"
NODE_PREFIX = "real-node-"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
DNS_READY_PORT = 8181
CLUSTER_DOMAIN = "cluster.local"
# The kubelet sets these kernel-wide sysctls at start (protectKernelDefaults: false);
# recorded before and restored by teardown().
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
NETNS_SYSCTLS = {  # inside the node's namespace only
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


class NodeError(RuntimeError):
    """A real node cannot be set up on this machine (the message says why)."""


# ---- what the machine can do -----------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why this machine cannot run real pods, or None when it can (packages may be missing)."""
    if not Path("/proc/self/ns/net").exists():
        return "not Linux with network namespaces"
    if os.geteuid() != 0:
        return "real nodes need root (containerd, network namespaces, cgroups, mounts)"
    if not _cgroup_mounts():
        return f"no cgroup file system is mounted (looked for {CGROUP_ROOT})"
    missing = [pkg for path, pkg in APT_PACKAGES.items() if not Path(path).exists()]
    if missing and not shutil.which("apt-get"):
        return f"{', '.join(missing)} missing and no apt-get to install them"
    if not shutil.which("ip"):
        return "the 'ip' command (iproute2) is missing"
    probe = f"pilothouse-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def ensure_packages(log: Log) -> None:
    """apt-get install what is missing of containerd, runc, the CNI plugins and iptables."""
    missing = sorted({pkg for path, pkg in APT_PACKAGES.items() if not Path(path).exists()})
    if not missing:
        return
    log(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    proc = subprocess.run(install, capture_output=True, text=True, env=env)
    if proc.returncode != 0:  # stale package lists on a fresh machine: update once, retry
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        proc = subprocess.run(install, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise NodeError(f"apt-get install {' '.join(missing)} failed:\n{proc.stderr[-2000:]}")


# ---- addresses -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeNet:
    """Names and addresses of one real node (pure: derived from slot and index)."""

    slot: int
    index: int

    @property
    def name(self) -> str:
        return f"{NODE_PREFIX}{self.index}"

    @property
    def netns(self) -> str:
        return f"pilothouse-{self.slot}-{self.index}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def host_veth(self) -> str:
        return f"ph{self.slot}n{self.index}"

    @property
    def host_ip(self) -> str:
        """The host's address on this node's link: what pods reach the host's services on."""
        return f"10.250.{self.slot}.{4 * self.index + 1}"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.slot}.{4 * self.index + 2}"

    @property
    def pod_cidr(self) -> str:
        """Unique per slot and node: the host routes it to the node (pods reachable from it)."""
        return f"10.244.{8 * self.slot + self.index}.0/24"

    @property
    def cgroup(self) -> str:
        return f"pilothouse-{self.slot}-{self.index}"


def service_cidr(slot: int) -> str:
    """Services of the cluster in ``slot``: routed from the host, so unique per slot."""
    return f"10.{96 + slot}.0.0/16"


def service_ip(slot: int) -> str:
    """The ``kubernetes`` Service: the first address of the service range."""
    return f"10.{96 + slot}.0.1"


CLUSTER_POD_CIDR = "10.244.0.0/16"


# ---- the record of what was changed -------------------------------------------------------


def _record_path(state_dir: Path) -> Path:
    return state_dir / "nodes.json"


def read_record(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_record_path(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data


def _write_record(state_dir: Path, record: dict[str, Any]) -> None:
    _record_path(state_dir).write_text(json.dumps(record, indent=2))


def _run(*args: str, check: bool = True, netns: str | None = None) -> str:
    argv = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _read_sysctl(key: str) -> str | None:
    try:
        return (Path("/proc/sys") / key).read_text().strip()
    except OSError:
        return None


def _write_sysctl(key: str, value: str) -> None:
    with contextlib.suppress(OSError):
        (Path("/proc/sys") / key).write_text(value)


@contextlib.contextmanager
def _slot_lock() -> Iterator[None]:
    with open(SLOT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def allocate_slot(state_dir: Path) -> int:
    """The lowest slot no node namespace uses; recorded in the state dir before it is used."""
    with _slot_lock():
        used = {p.name.split("-")[1] for p in NETNS_DIR.glob("pilothouse-*-*")}
        for slot in range(MAX_SLOTS):
            if str(slot) not in used:
                _write_record(state_dir, {"slot": slot, "nodes": []})
                NETNS_DIR.mkdir(parents=True, exist_ok=True)
                # Claim it at once (the namespace is the claim) for concurrent starts.
                _run("ip", "netns", "add", NodeNet(slot, 0).netns)
                return slot
    raise NodeError(f"all {MAX_SLOTS} slots for clusters with real nodes are in use")


# ---- network -----------------------------------------------------------------------------


def setup_network(state_dir: Path, net: NodeNet) -> None:
    """Namespace, veth pair, addresses, routes and the namespace's sysctls of one node."""
    record = read_record(state_dir)
    record["nodes"] = sorted({*record.get("nodes", []), net.index})
    _write_record(state_dir, record)
    if not net.netns_path.exists():
        _run("ip", "netns", "add", net.netns)
    peer = f"{net.host_veth}p"
    _run("ip", "link", "add", net.host_veth, "type", "veth", "peer", "name", peer)
    _run("ip", "link", "set", peer, "netns", net.netns)
    _run("ip", "addr", "add", f"{net.host_ip}/30", "dev", net.host_veth)
    _run("ip", "link", "set", net.host_veth, "up")
    ns = net.netns
    _run("ip", "link", "set", peer, "name", "eth0", netns=ns)
    _run("ip", "addr", "add", f"{net.node_ip}/30", "dev", "eth0", netns=ns)
    _run("ip", "link", "set", "eth0", "up", netns=ns)
    _run("ip", "link", "set", "lo", "up", netns=ns)
    _run("ip", "route", "add", "default", "via", net.host_ip, netns=ns)
    for key, value in NETNS_SYSCTLS.items():
        _run("sysctl", "-q", "-w", f"{key.replace('/', '.')}={value}", netns=ns)
    _run("ip", "route", "add", net.pod_cidr, "via", net.node_ip)  # pod IPs, from the host
    if net.index == 0:  # the host reaches ClusterIPs through node 0's kube-proxy
        _run("ip", "route", "add", service_cidr(net.slot), "via", net.node_ip)


# ---- cgroups -------------------------------------------------------------------------------


def _cgroup_mounts() -> list[Path]:
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            mounts.append(Path(fields[1]))
    return mounts


def setup_cgroups(net: NodeNet) -> None:
    """The kubelet's cgroupRoot must exist in every hierarchy (cpuset initialised)."""
    for mount in _cgroup_mounts():
        path = mount / net.cgroup
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((mount / knob).read_text())


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for mount in _cgroup_mounts():
        root = mount / name
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroups(name: str) -> None:
    for mount in _cgroup_mounts():
        root = mount / name
        if not root.is_dir():
            continue
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


# ---- configuration files ---------------------------------------------------------------


def node_dir(state_dir: Path, index: int) -> Path:
    return state_dir / f"node-{index}"


def socket_dir(state_dir: Path) -> Path:
    """Short paths for containerd's sockets (a unix socket path has at most 104 bytes)."""
    return SOCKET_ROOT / hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]


def containerd_socket(state_dir: Path, index: int) -> Path:
    return socket_dir(state_dir) / f"containerd-{index}.sock"


def check_paths(state_dir: Path) -> None:
    """The kubelet's own sockets live under its root dir: refuse a state dir too deep for them."""
    longest = node_dir(state_dir, MAX_NODE_INDEX) / "kubelet" / "pod-resources" / "kubelet.sock"
    if len(str(longest)) > MAX_SOCKET_PATH:
        raise NodeError(
            f"the state directory {state_dir} is too deep for the kubelet's unix sockets"
            f" ({len(str(longest))} > {MAX_SOCKET_PATH} bytes): use a shorter --state-dir"
        )


def containerd_root(state_dir: Path, index: int) -> Path:
    """Images and snapshots: kept across starts, so an imported image stays."""
    return state_dir / f"containerd-root-{index}"


def record_host_sysctls(state_dir: Path) -> None:
    """Keep the original values of what the kubelet changes, once for the whole host.

    Kernel sysctls are shared by every cluster with real nodes on this host: the first one
    records them (``SYSCTL_RECORD``), each one adds itself to the users, and the last one to
    leave restores them (``_release_host_sysctls``), so overlapping clusters never record
    another kubelet's values as the originals.
    """
    with _slot_lock():
        shared = _read_json(SYSCTL_RECORD)
        if not shared.get("original"):
            original = {k: v for k in KUBELET_SYSCTLS if (v := _read_sysctl(k)) is not None}
            shared = {"original": original, "users": []}
        shared["users"] = sorted({*shared.get("users", []), str(state_dir)})
        SYSCTL_RECORD.parent.mkdir(parents=True, exist_ok=True)
        SYSCTL_RECORD.write_text(json.dumps(shared, indent=2))


def _release_host_sysctls(state_dir: Path) -> None:
    """Drop this state dir (and users whose clusters are gone) from the shared record; the
    last user restores the original values."""
    with _slot_lock():
        shared = _read_json(SYSCTL_RECORD)
        if not shared:
            return
        users = [
            u
            for u in shared.get("users", [])
            if u != str(state_dir) and _record_path(Path(u)).exists()
        ]
        if users:
            SYSCTL_RECORD.write_text(json.dumps({**shared, "users": users}, indent=2))
            return
        for key, value in shared.get("original", {}).items():
            if _read_sysctl(key) != value:
                _write_sysctl(key, value)
        SYSCTL_RECORD.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


# ---- images ----------------------------------------------------------------------------------


def ctr(state_dir: Path, index: int, *args: str, input: bytes | None = None) -> str:
    """``ctr`` against one node's containerd, in the ``k8s.io`` namespace (the CRI's)."""
    argv = ["ctr", "--address", str(containerd_socket(state_dir, index)), "-n", "k8s.io", *args]
    proc = subprocess.run(argv, input=input, capture_output=True)
    if proc.returncode != 0:
        raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def image_names(state_dir: Path, index: int) -> set[str]:
    return set(ctr(state_dir, index, "images", "ls", "-q").split())


def import_image(state_dir: Path, index: int, archive: Path) -> None:
    """Load a ``docker save`` or OCI archive into the node (``ctr images import``)."""
    ctr(state_dir, index, "images", "import", "--no-unpack=false", str(archive))


# ---- teardown --------------------------------------------------------------------------------


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _shim_pids(state_dir: Path) -> set[int]:
    """containerd-shim processes of this state dir's containerds (they outlive containerd)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ours = str(state_dir) in cmdline or str(socket_dir(state_dir)) in cmdline
            if "containerd-shim" in cmdline and ours:
                found.add(int(proc.name))
    return found


def _mounts_under(*roots: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if any(target == str(r) or target.startswith(f"{r}/") for r in roots):
            found.append(target)
    return sorted(found, key=len, reverse=True)


def teardown(state_dir: Path, log: Log = print) -> None:
    """Undo everything real nodes of this state dir changed on the host (idempotent).

    Call after kubelet, kube-proxy and containerd were stopped (or died).
    """
    record = read_record(state_dir)
    if not record:
        return
    slot = int(record["slot"])
    nets = [NodeNet(slot, i) for i in record.get("nodes", [])] or [NodeNet(slot, 0)]
    # 1. Every container process: those in the nodes' cgroups, and the shims.
    for _ in range(50):
        victims = set().union(*(_cgroup_pids(n.cgroup) for n in nets)) | _shim_pids(state_dir)
        victims.discard(os.getpid())
        if not victims:
            break
        _kill_all(victims)
        time.sleep(0.1)
    # 2. Shim sockets (outside the state dir, named after the bundle's address file).
    bundles = "node-*/containerd/state/io.containerd.runtime.v2.task/*/*"
    for address in state_dir.glob(f"{bundles}/address"):
        with contextlib.suppress(OSError):
            Path(address.read_text().strip().removeprefix("unix://")).unlink()
    # 3. Mounts: overlay root file systems, Secret/emptyDir tmpfs, pod network namespaces.
    roots = [node_dir(state_dir, n.index) for n in nets]
    roots += [containerd_root(state_dir, n.index) for n in nets]
    for _ in range(3):
        targets = _mounts_under(*roots)
        if not targets:
            break
        for target in targets:
            subprocess.run(["umount", "-l", target], capture_output=True)
    # 4. The node namespaces (with them their veths, bridges, iptables, routes).
    for net in nets:
        if net.netns_path.exists():
            _run("ip", "netns", "delete", net.netns, check=False)
        _run("ip", "link", "delete", net.host_veth, check=False)
    # 5. cgroups, container log links, CNI's cache.
    for net in nets:
        _remove_cgroups(net.cgroup)
        for cached in CNI_CACHE.glob(f"pilothouse-{slot}-{net.index}-*"):
            cached.unlink(missing_ok=True)
    logs = [str(node_dir(state_dir, n.index) / "pod-logs") for n in nets]
    for link in CONTAINER_LOGS.glob("*.log") if CONTAINER_LOGS.is_dir() else []:
        with contextlib.suppress(OSError):
            if link.is_symlink() and any(os.readlink(link).startswith(p) for p in logs):
                link.unlink()
    # 6. Kernel sysctls the kubelet changed (restored when no other cluster's kubelet runs).
    _record_path(state_dir).unlink(missing_ok=True)
    _release_host_sysctls(state_dir)
    for root in roots[: len(nets)]:  # node dirs (not the image store)
        if not _mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(socket_dir(state_dir), ignore_errors=True)
    _record_path(state_dir).unlink(missing_ok=True)
    log(f"real nodes of slot {slot} cleaned up")
