"""Real nodes of the local control plane: what they are made of, and that they leave nothing.

The pure parts (addresses per slot and node, the pause image archive, the node module's go.mod,
the control plane's build stamp) are checked without a cluster. The crash test starts a cluster
with a real node, runs a pod, kills every process of it at once (as a crash or ``kill -9``
would), and checks that ``down`` from a fresh launcher removes every change from the host:
processes, mounts, the node's network namespace and veth, routes, cgroups, the kernel sysctls
the kubelet set.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from cluster import binaries, launcher, nodefiles, nodes
from polling import wait_until


def test_addresses_of_nodes_and_slots_never_overlap() -> None:
    nets = [nodes.NodeNet(slot, index) for slot in range(nodes.MAX_SLOTS) for index in range(8)]

    links = [ipaddress.ip_network(f"{n.host_ip}/30", strict=False) for n in nets]
    pods = [ipaddress.ip_network(n.pod_cidr) for n in nets]
    services = [ipaddress.ip_network(nodes.service_cidr(s)) for s in range(nodes.MAX_SLOTS)]
    every = links + pods + services
    assert all(not a.overlaps(b) for i, a in enumerate(every) for b in every[i + 1 :])
    assert all(ipaddress.ip_address(n.node_ip) in link for n, link in zip(nets, links, strict=True))
    assert len({n.netns for n in nets}) == len({n.host_veth for n in nets}) == len(nets)
    assert all(len(n.host_veth) + 1 <= 15 for n in nets)  # IFNAMSIZ, with the peer's "p"


def test_pause_image_archive_is_a_docker_save_archive_of_one_layer(tmp_path: Path) -> None:
    binary = tmp_path / "pause-binary"
    binary.write_bytes(b"\x7fELF not really")

    archive = nodefiles.pause_image_archive(binary, tmp_path / "pause.tar")

    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == [nodes.PAUSE_IMAGE]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        member = inner.getmember("pause")
        assert member.mode == 0o755
        assert inner.extractfile(member).read() == binary.read_bytes()  # type: ignore[union-attr]


def test_node_module_requires_the_pinned_kubernetes_and_published_staging_modules() -> None:
    versions = binaries.read_versions()
    go_mod = binaries.NODE_GO_MOD.read_text()

    assert binaries.go_mod_version(binaries.NODE_GO_MOD) == versions.kubernetes
    assert "module pilothouse.dev/e2e/cluster/node\n" in go_mod
    assert f"\tk8s.io/kubelet => k8s.io/kubelet {versions.staging}\n" in go_mod
    assert f"\tk8s.io/kube-proxy => k8s.io/kube-proxy {versions.staging}\n" in go_mod


def test_the_control_planes_build_stamp_ignores_the_node_and_dns_modules() -> None:
    versions = binaries.read_versions()

    control_plane = binaries.stamp(versions)
    node = binaries.stamp(versions, binaries.NODE_DIR, binaries.DNS_DIR)

    assert control_plane == binaries.stamp(versions, binaries.CLUSTER_DIR)
    assert node != control_plane


def _host_state(state_dir: Path, slot: int) -> dict[str, object]:
    net = nodes.NodeNet(slot, 0)
    mounts = Path("/proc/self/mounts").read_text()
    procs = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(state_dir) in cmdline:
                procs.append(cmdline[:80])
    return {
        "processes": procs,
        "mounts": [line for line in mounts.splitlines() if str(state_dir) in line],
        "netns": net.netns_path.exists(),
        "veth": Path(f"/sys/class/net/{net.host_veth}").exists(),
        "routes": net.pod_cidr.split("/")[0]
        in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout,
        "cgroups": [
            str(m / net.cgroup) for m in nodes._cgroup_mounts() if (m / net.cgroup).exists()
        ],
        "sysctls": {k: nodes._read_sysctl(k) for k in nodes.KUBELET_SYSCTLS},
    }


@pytest.mark.real_pods
def test_down_after_a_crash_undoes_every_change_to_the_host() -> None:
    reason = nodes.unavailable_reason()
    if reason is not None:
        if os.environ.get("PILOTHOUSE_TEST_REAL_PODS") == "1":
            pytest.fail(f"PILOTHOUSE_TEST_REAL_PODS=1 but real nodes cannot run here: {reason}")
        pytest.skip(f"real nodes cannot run here: {reason}")
    sysctls_before = {k: nodes._read_sysctl(k) for k in nodes.KUBELET_SYSCTLS}
    state_dir = Path(tempfile.mkdtemp(prefix="ph-crash-", dir="/tmp"))  # short: unix sockets
    cluster = launcher.Cluster(state_dir, nodes=0, real_nodes=1, log=lambda _: None)
    cluster.start(keep_running=True)  # processes that outlive us, as after `launcher.py up`
    slot = int(json.loads((state_dir / "cluster.json").read_text())["slot"])
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sandbox", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": nodes.PAUSE_IMAGE,
                                     "imagePullPolicy": "Never"}]},
        }))  # fmt: skip
        wait_until(
            lambda: (
                cluster.kubectl("get", "pod", "sandbox", "-o", "jsonpath={.status.phase}").stdout
            ),
            lambda phase: phase == "Running",
            what="a pod running on the real node",
            timeout=120,
        )
        running = _host_state(state_dir, slot)
        assert running["netns"]
        assert running["veth"]
        assert running["routes"]
        assert running["cgroups"]
        assert any("overlay" in m for m in running["mounts"])  # type: ignore[attr-defined]

        # The crash: every process of the cluster killed at once; containers keep running.
        for pid in json.loads((state_dir / "pids.json").read_text()).values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        assert _host_state(state_dir, slot)["mounts"]
    finally:
        launcher.Cluster(state_dir, nodes=0, real_nodes=1, log=lambda _: None).stop()

    after = _host_state(state_dir, slot)
    cluster.stop()  # only collects the exit codes of the processes killed above
    assert after == {
        "processes": [],
        "mounts": [],
        "netns": False,
        "veth": False,
        "routes": False,
        "cgroups": [],
        "sysctls": sysctls_before,
    }
    assert not (state_dir / "nodes.json").exists()
    assert not nodes.socket_dir(state_dir).exists()
    shutil.rmtree(state_dir, ignore_errors=True)


def test_a_state_dir_too_deep_for_unix_sockets_is_refused_with_the_reason(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 80)

    with pytest.raises(nodes.NodeError, match="too deep for the kubelet's unix sockets"):
        nodes.check_paths(deep)


def test_without_real_nodes_possible_the_cluster_says_why_and_runs_kwok_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "real nodes need root (containerd, network namespaces, cgroups, mounts)"
    monkeypatch.setattr(nodes, "unavailable_reason", lambda: reason)
    said: list[str] = []
    cluster = launcher.Cluster(tmp_path / "c", nodes=0, real_nodes=1, log=said.append)

    with cluster:
        names = cluster.kubectl("get", "nodes", "-o", "name").stdout.split()

        assert cluster.fallback_reason == reason
        assert (cluster.nodes, cluster.real_nodes) == (1, 0)
        assert names == ["node/kwok-node-0"]
        assert cluster.host_address == "127.0.0.1"
    assert any(f"real nodes are not possible here: {reason}" in line for line in said)
    assert not (tmp_path / "c" / "nodes.json").exists()


def test_overlapping_clusters_restore_the_hosts_sysctls_only_when_the_last_one_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = dict.fromkeys(nodes.KUBELET_SYSCTLS, "0")  # /proc/sys, in memory
    monkeypatch.setattr(nodes, "_read_sysctl", kernel.get)
    monkeypatch.setattr(nodes, "_write_sysctl", kernel.__setitem__)
    monkeypatch.setattr(nodes, "SYSCTL_RECORD", tmp_path / "run" / "host-sysctls.json")
    monkeypatch.setattr(nodes, "SLOT_LOCK", tmp_path / "lock")
    first, second = tmp_path / "a", tmp_path / "b"
    for state_dir in (first, second):
        state_dir.mkdir()
        # A slot no cluster here uses: the rest of teardown() finds nothing to undo.
        (state_dir / "nodes.json").write_text(json.dumps({"slot": nodes.MAX_SLOTS - 1}))

    nodes.record_host_sysctls(first)
    kernel.update(dict.fromkeys(nodes.KUBELET_SYSCTLS, "1"))  # the first kubelet starts
    nodes.record_host_sysctls(second)  # must not take "1" for the original
    nodes.teardown(first, log=lambda _: None)
    while_second_runs = dict(kernel)
    nodes.teardown(second, log=lambda _: None)

    assert set(while_second_runs.values()) == {"1"}
    assert set(kernel.values()) == {"0"}
    assert not nodes.SYSCTL_RECORD.exists()
