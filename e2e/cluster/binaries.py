"""Build the Kubernetes binaries Pilothouse's end-to-end tests and demo run against.

Everything is compiled from Go modules fetched through the module proxy, so no container
image or release tarball is needed:

* ``kube``: one multi-call binary (``cmd/kube``) holding etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler and kubectl, with a symlink per name;
* ``kwok`` and ``helm``: ``go install``-ed at the versions pinned in ``versions.env``,
  each with its own upstream go.mod (helm follows a newer Kubernetes library than ours);
* ``kwok-stages.yaml``: KWOK's default node and pod stages, copied from the pinned KWOK
  module, because KWOK refuses to start without stages;
* only for real nodes (``build_node``): ``kube-node``, a second multi-call binary
  (``node/cmd/kube-node``) holding kubelet and kube-proxy, and ``pause``, the static binary of
  the pod sandbox image. They live in their own module (``node/go.mod``, generated the same
  way) so that adding them changed neither go.mod nor the stamp of the control plane; their
  shared packages come from the Go build cache at the same versions.
* ``promtool``: Prometheus's rule and metrics checker, ``go install``-ed from the pinned
  Prometheus module (the chart's alert rules are unit-tested with it, scraped ``/metrics``
  checked with it). It has a cache directory and stamp of its own, so pinning another
  Prometheus never rebuilds the control plane, nor the reverse.

``versions.env`` is the only place a version is pinned. ``go.mod`` is generated from it:
``k8s.io/kubernetes`` replaces its staging modules with local paths, so a module of our own
must replace each of them with the published ``k8s.io/<name> v0.<minor>.<patch>``. The
list is read from the kubernetes module's own go.mod, never typed by hand.

Binaries land in ``.cache/k8s/<kubernetes version>/bin/`` (ignored by git) next to a stamp
file per module (``.stamp``, ``.node-stamp``); they are rebuilt only when the stamp (pinned
versions + go.sum + the Go sources) changes. Called by ``launcher.py build|up`` and,
through it, by ``make cluster-binaries``.
promtool lands in ``.cache/prometheus/<module version>/bin/`` the same way
(``launcher.py promtool``, ``make promtool``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CLUSTER_DIR = Path(__file__).resolve().parent
REPO_ROOT = CLUSTER_DIR.parent.parent
VERSIONS_FILE = CLUSTER_DIR / "versions.env"
GO_MOD = CLUSTER_DIR / "go.mod"
NODE_DIR = CLUSTER_DIR / "node"
DNS_DIR = CLUSTER_DIR / "dns"
NODE_GO_MOD = NODE_DIR / "go.mod"
DEFAULT_CACHE_ROOT = REPO_ROOT / ".cache" / "k8s"
DEFAULT_PROMTOOL_ROOT = REPO_ROOT / ".cache" / "prometheus"
PROMTOOL_PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"

MODULE_PATH = "pilothouse.dev/e2e/cluster"
NODE_MODULE_PATH = "pilothouse.dev/e2e/cluster/node"
NODE_MULTICALL = "kube-node"
NODE_COMMANDS = ("kubelet", "kube-proxy")
PAUSE = "pause"
COREDNS = "coredns"
MULTICALL = "kube"
MULTICALL_COMMANDS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
)
KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
STAMP_NAME = ".stamp"
NODE_STAMP_NAME = ".node-stamp"
DEFAULT_JOBS = 2

_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.MULTILINE)
_GO_DIRECTIVE = re.compile(r"^go\s+(\S+)", re.MULTILINE)
_ETCD_SERVER = re.compile(r"^\s*go\.etcd\.io/etcd/server/v3\s+(v\S+)", re.MULTILINE)
_KUBERNETES_REQUIRE = re.compile(r"^\s*k8s\.io/kubernetes\s+(v\S+)", re.MULTILINE)
_PROMETHEUS_MODULE = re.compile(r"v0\.([1-9]\d{2,})\.(\d+)")

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """A Go command failed or the pinned versions are inconsistent."""


@dataclasses.dataclass(frozen=True)
class Versions:
    """The versions pinned in ``versions.env``."""

    kubernetes: str
    kwok: str
    helm: str
    prometheus: str
    """Version of the ``github.com/prometheus/prometheus`` Go module: ``v0.316.0`` is
    Prometheus 3.16.0 (the module's versions are ``v0.<major><minor:02>.<patch>``)."""

    @property
    def staging(self) -> str:
        """Version of the published staging modules: v1.36.3 -> v0.36.3."""
        _major, minor, patch = self.kubernetes.lstrip("v").split(".", 2)
        return f"v0.{minor}.{patch}"

    @property
    def major_minor(self) -> tuple[str, str]:
        major, minor, _ = self.kubernetes.lstrip("v").split(".", 2)
        return major, minor

    @property
    def prometheus_release(self) -> str:
        """The Prometheus release of the pinned module: v0.316.0 -> 3.16.0."""
        match = _PROMETHEUS_MODULE.fullmatch(self.prometheus)
        if match is None:
            raise BuildError(
                f"PROMETHEUS_VERSION={self.prometheus}: expected a Prometheus Go module version "
                "such as v0.316.0 (Prometheus 3.16.0)"
            )
        release = int(match.group(1))
        return f"{release // 100}.{release % 100}.{match.group(2)}"


def read_versions(path: Path = VERSIONS_FILE) -> Versions:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    try:
        return Versions(
            kubernetes=values["KUBERNETES_VERSION"],
            kwok=values["KWOK_VERSION"],
            helm=values["HELM_VERSION"],
            prometheus=values["PROMETHEUS_VERSION"],
        )
    except KeyError as e:
        raise BuildError(f"{path}: missing {e.args[0]}") from e


def cache_dir(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> Path:
    return root / versions.kubernetes


def bin_dir(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> Path:
    return cache_dir(versions, root) / "bin"


def kwok_stages_file(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> Path:
    return cache_dir(versions, root) / "kwok-stages.yaml"


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"  # static binaries, and no C toolchain needed
    env["GOFLAGS"] = "-buildvcs=false"
    return env


def _go(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain ('go') is not on PATH; install Go >= 1.26")
    proc = subprocess.run(
        [go, *args], cwd=cwd, env=env or _go_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BuildError(f"go {' '.join(args)} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def _download(module: str, version: str) -> dict[str, str]:
    """``go mod download -json``, run outside our module so its go.mod plays no part."""
    with tempfile.TemporaryDirectory() as tmp:
        out = _go(["mod", "download", "-json", f"{module}@{version}"], cwd=Path(tmp))
    info: dict[str, str] = json.loads(out)
    return info


def render_go_mod_head(
    versions: Versions, kubernetes_go_mod: str, *, module: str = MODULE_PATH
) -> str:
    """The hand-written part of go.mod; ``go mod tidy`` adds the indirect requirements.

    The control plane's module also requires etcd; the node module (kubelet, kube-proxy)
    only k8s.io/kubernetes.
    """
    go_directive = _GO_DIRECTIVE.search(kubernetes_go_mod)
    etcd = _ETCD_SERVER.search(kubernetes_go_mod)
    staging = sorted(set(_STAGING_REPLACE.findall(kubernetes_go_mod)))
    if go_directive is None or etcd is None or not staging:
        raise BuildError("unexpected k8s.io/kubernetes go.mod: no go directive, etcd or staging")
    replaces = "".join(f"\t{m} => {m} {versions.staging}\n" for m in staging)
    if module == MODULE_PATH:
        require = (
            "require (\n"
            f"\tgo.etcd.io/etcd/server/v3 {etcd.group(1)}\n"
            f"\tk8s.io/kubernetes {versions.kubernetes}\n"
            ")\n\n"
        )
    else:
        require = f"require k8s.io/kubernetes {versions.kubernetes}\n\n"
    return (
        "// Generated from versions.env by binaries.py (launcher.py build); do not edit.\n"
        f"module {module}\n\n"
        f"go {go_directive.group(1)}\n\n"
        f"{require}"
        "// k8s.io/kubernetes points its staging modules at ./staging; use the published ones.\n"
        f"replace (\n{replaces})\n"
    )


def go_mod_version(path: Path = GO_MOD) -> str | None:
    """The k8s.io/kubernetes version go.mod requires, or None without a go.mod."""
    if not path.exists():
        return None
    match = _KUBERNETES_REQUIRE.search(path.read_text())
    return match.group(1) if match else None


def sync_go_mod(
    versions: Versions, *, log: Log = print, go_mod: Path = GO_MOD, module: str = MODULE_PATH
) -> bool:
    """Regenerate go.mod and go.sum when they pin another Kubernetes; True if changed."""
    if go_mod_version(go_mod) == versions.kubernetes:
        return False
    log(f"generating {go_mod.relative_to(CLUSTER_DIR)} for k8s.io/kubernetes {versions.kubernetes}")
    info = _download("k8s.io/kubernetes", versions.kubernetes)
    head = render_go_mod_head(versions, Path(info["GoMod"]).read_text(), module=module)
    go_mod.write_text(head)
    (go_mod.parent / "go.sum").unlink(missing_ok=True)
    _go(["mod", "tidy"], cwd=go_mod.parent)
    return True


def _ldflags(versions: Versions) -> str:
    major, minor = versions.major_minor
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={versions.kubernetes}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _helm_ldflags(versions: Versions) -> str:
    major, minor = versions.major_minor
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={versions.helm}"]
    # Capabilities for `helm template` without a cluster: the Kubernetes we test against.
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def stamp(versions: Versions, *module_dirs: Path) -> str:
    """What a module's binaries were built from; a different stamp means rebuild."""
    digest = hashlib.sha256()
    for module_dir in module_dirs or (CLUSTER_DIR,):
        for path in (module_dir / "go.sum", *sorted((module_dir / "cmd").rglob("*.go"))):
            digest.update(path.read_bytes() if path.exists() else b"")
    # Prometheus is cached apart (promtool): pinning another one rebuilds nothing here.
    pinned = {k: getattr(versions, k) for k in ("kubernetes", "kwok", "helm")}
    return json.dumps({**pinned, "sources": digest.hexdigest()}, sort_keys=True)


def expected_files(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> list[Path]:
    bins = bin_dir(versions, root)
    names = (MULTICALL, *MULTICALL_COMMANDS, "kwok", "helm")
    return [bins / n for n in names] + [kwok_stages_file(versions, root)]


def is_built(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> bool:
    stamp_file = bin_dir(versions, root) / STAMP_NAME
    if not all(p.exists() for p in expected_files(versions, root)) or not stamp_file.exists():
        return False
    return stamp_file.read_text() == stamp(versions)


def build(
    versions: Versions | None = None,
    *,
    root: Path = DEFAULT_CACHE_ROOT,
    force: bool = False,
    jobs: int = DEFAULT_JOBS,
    log: Log = print,
) -> Path:
    """Build every binary unless the stamp says they are current; return the bin dir.

    Concurrent callers (e.g. pytest-xdist workers) wait for each other on a lock file.
    """
    versions = versions or read_versions()
    bins = bin_dir(versions, root)
    bins.mkdir(parents=True, exist_ok=True)
    with open(cache_dir(versions, root) / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sync_go_mod(versions, log=log)
        if force or not is_built(versions, root):
            _build(versions, bins, root=root, jobs=jobs, log=log)
    return bins


def _build(versions: Versions, bins: Path, *, root: Path, jobs: int, log: Log) -> None:
    (bins / STAMP_NAME).unlink(missing_ok=True)
    started = time.monotonic()

    log(f"building {MULTICALL} ({', '.join(MULTICALL_COMMANDS)}) {versions.kubernetes}")
    _go(
        [
            "build",
            "-p",
            str(jobs),
            "-trimpath",
            f"-ldflags={_ldflags(versions)}",
            "-o",
            str(bins / MULTICALL),
            f"./cmd/{MULTICALL}",
        ],
        cwd=CLUSTER_DIR,
    )
    for name in MULTICALL_COMMANDS:
        link = bins / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(MULTICALL)

    log(f"installing kwok {versions.kwok}")
    _go_install(f"sigs.k8s.io/kwok/cmd/kwok@{versions.kwok}", "-s -w", bins=bins, jobs=jobs)
    log(f"installing helm {versions.helm}")
    _go_install(
        f"helm.sh/helm/v3/cmd/helm@{versions.helm}",
        _helm_ldflags(versions),
        bins=bins,
        jobs=jobs,
    )

    kwok_dir = Path(_download("sigs.k8s.io/kwok", versions.kwok)["Dir"])
    stages = "---\n".join((kwok_dir / f).read_text() for f in KWOK_STAGE_FILES)
    kwok_stages_file(versions, root).write_text(stages)

    (bins / STAMP_NAME).write_text(stamp(versions))
    log(f"built {bins} in {time.monotonic() - started:.0f}s")


def _go_install(package_at_version: str, ldflags: str, *, bins: Path, jobs: int) -> None:
    """``go install`` one command at a pinned version, with its own upstream go.mod."""
    _go(
        ["install", "-p", str(jobs), "-trimpath", f"-ldflags={ldflags}", package_at_version],
        cwd=CLUSTER_DIR,
        env={**_go_env(), "GOBIN": str(bins)},
    )


# ------------------------------------------------------------------------------- promtool


def promtool_path(versions: Versions, root: Path = DEFAULT_PROMTOOL_ROOT) -> Path:
    return root / versions.prometheus / "bin" / "promtool"


def promtool_stamp(versions: Versions) -> str:
    return json.dumps({"package": PROMTOOL_PACKAGE, "prometheus": versions.prometheus})


def promtool_is_built(versions: Versions, root: Path = DEFAULT_PROMTOOL_ROOT) -> bool:
    path = promtool_path(versions, root)
    stamp_file = path.parent / STAMP_NAME
    return (
        path.exists() and stamp_file.exists() and stamp_file.read_text() == promtool_stamp(versions)
    )


def build_promtool(
    versions: Versions | None = None,
    *,
    root: Path = DEFAULT_PROMTOOL_ROOT,
    force: bool = False,
    jobs: int = DEFAULT_JOBS,
    log: Log = print,
) -> Path:
    """Build promtool unless its stamp says it is current; return the binary's path.

    Concurrent callers (pytest-xdist workers, two test tiers) wait for each other on a lock.
    """
    versions = versions or read_versions()
    path = promtool_path(versions, root)
    bins = path.parent
    bins.mkdir(parents=True, exist_ok=True)
    with open(bins.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not promtool_is_built(versions, root):
            (bins / STAMP_NAME).unlink(missing_ok=True)
            started = time.monotonic()
            release = versions.prometheus_release
            log(f"installing promtool {release} ({PROMTOOL_PACKAGE}@{versions.prometheus})")
            # The version `promtool --version` reports; promtool reads no other build info.
            ldflags = f"-s -w -X github.com/prometheus/common/version.Version={release}"
            _go_install(f"{PROMTOOL_PACKAGE}@{versions.prometheus}", ldflags, bins=bins, jobs=jobs)
            (bins / STAMP_NAME).write_text(promtool_stamp(versions))
            log(f"built {path} in {time.monotonic() - started:.0f}s")
    return path


def node_files(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> list[Path]:
    bins = bin_dir(versions, root)
    return [bins / n for n in (NODE_MULTICALL, *NODE_COMMANDS, PAUSE, COREDNS)]


def is_node_built(versions: Versions, root: Path = DEFAULT_CACHE_ROOT) -> bool:
    stamp_file = bin_dir(versions, root) / NODE_STAMP_NAME
    if not all(p.exists() for p in node_files(versions, root)) or not stamp_file.exists():
        return False
    return stamp_file.read_text() == stamp(versions, NODE_DIR, DNS_DIR)


def build_node(
    versions: Versions | None = None,
    *,
    root: Path = DEFAULT_CACHE_ROOT,
    force: bool = False,
    jobs: int = DEFAULT_JOBS,
    log: Log = print,
) -> Path:
    """Build kubelet, kube-proxy (``kube-node``), ``pause`` and ``coredns`` unless current;
    return the bin dir.

    Only clusters with real nodes need them. Compiled after the control plane, most of
    kube-node's packages come out of the Go build cache.
    """
    versions = versions or read_versions()
    bins = bin_dir(versions, root)
    bins.mkdir(parents=True, exist_ok=True)
    with open(cache_dir(versions, root) / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sync_go_mod(versions, log=log, go_mod=NODE_GO_MOD, module=NODE_MODULE_PATH)
        if force or not is_node_built(versions, root):
            _build_node(versions, bins, jobs=jobs, log=log)
    return bins


def _build_node(versions: Versions, bins: Path, *, jobs: int, log: Log) -> None:
    (bins / NODE_STAMP_NAME).unlink(missing_ok=True)
    started = time.monotonic()
    log(f"building {NODE_MULTICALL} ({', '.join(NODE_COMMANDS)}) {versions.kubernetes}")
    _go(
        [
            "build",
            "-p",
            str(jobs),
            "-trimpath",
            f"-ldflags={_ldflags(versions)}",
            "-o",
            str(bins / NODE_MULTICALL),
            f"./cmd/{NODE_MULTICALL}",
        ],
        cwd=NODE_DIR,
    )
    for name in NODE_COMMANDS:
        link = bins / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(NODE_MULTICALL)
    _go(
        ["build", "-trimpath", "-ldflags=-s -w", "-o", str(bins / PAUSE), f"./cmd/{PAUSE}"],
        cwd=NODE_DIR,
    )
    log(f"building {COREDNS} (the cluster DNS, its pin in dns/go.mod)")
    _go(
        ["build", "-p", str(jobs), "-trimpath", "-ldflags=-s -w", "-o", str(bins / COREDNS),
         f"./cmd/{COREDNS}"],
        cwd=DNS_DIR,
    )  # fmt: skip
    (bins / NODE_STAMP_NAME).write_text(stamp(versions, NODE_DIR, DNS_DIR))
    log(f"built {NODE_MULTICALL}, {PAUSE} and {COREDNS} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    try:
        print(build(force="--force" in sys.argv[1:]))
    except BuildError as e:
        sys.exit(f"error: {e}")
