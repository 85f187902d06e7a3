"""Render, apply and inspect the Pilothouse Helm chart in end-to-end tests.

Used by e2e/test_chart_*.py (e2e/ is on sys.path). Helm and kubectl are the binaries
``e2e/cluster`` builds; Helm runs with its config, cache and data in a private folder so tests
neither read nor change the user's Helm setup. The Prometheus Operator CRDs (for the chart's
ServiceMonitors and PrometheusRule) come from the pinned prometheus-operator Go module, fetched
with ``go mod download`` like the rest of the test control plane.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from cluster import binaries

REPO_ROOT = binaries.REPO_ROOT
CHART_DIR = REPO_ROOT / "charts" / "pilothouse"
CI_VALUES = tuple(sorted((CHART_DIR / "ci").glob("*-values.yaml")))
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
MONITORING_CRD_FILES = (
    "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
)
HOOK_ANNOTATION = "helm.sh/hook"
INSTANCE_LABEL = "app.kubernetes.io/instance"

Doc = dict[str, Any]


class Helm:
    """The pinned helm binary with a private home; ``kubeconfig`` for commands that need one."""

    def __init__(self, path: Path, home: Path, kubeconfig: Path | None = None) -> None:
        self.path = path
        self.home = home
        self.kubeconfig = kubeconfig

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.path, self.home, kubeconfig)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run helm; on failure with check=True, raise with its output in the message."""
        proc = subprocess.run(
            [str(self.path), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def template(
        self,
        release: str = "pilothouse",
        namespace: str = "pilothouse-system",
        *,
        values: Iterable[Path] = (),
        sets: Sequence[str] = (),
    ) -> list[Doc]:
        """Every manifest the chart renders (CRDs, hooks and the test pod included)."""
        args = ["template", release, str(CHART_DIR), "--namespace", namespace, "--include-crds"]
        for path in values:
            args += ["--values", str(path)]
        for item in sets:
            args += ["--set", item]
        return [d for d in yaml.safe_load_all(self.run(*args).stdout) if d]


def helm_binary_path() -> Path:
    """The pinned helm, built with the other cluster binaries when missing."""
    versions = binaries.read_versions()
    if not binaries.is_built(versions):
        binaries.build(versions)
    return binaries.bin_dir(versions) / "helm"


def helm(tmp_root: Path) -> Helm:
    """The pinned helm with its home under tmp_root."""
    return Helm(helm_binary_path(), tmp_root)


def kinds(docs: Iterable[Doc], *names: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in names]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def is_hook(doc: Doc) -> bool:
    return HOOK_ANNOTATION in (doc["metadata"].get("annotations") or {})


def is_crd(doc: Doc) -> bool:
    return bool(doc["kind"] == "CustomResourceDefinition")


def to_yaml(docs: Iterable[Doc]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def monitoring_crds() -> list[Doc]:
    """ServiceMonitor and PrometheusRule CRDs of the pinned Prometheus Operator release."""
    go = shutil.which("go")
    if go is None:
        raise AssertionError("the Go toolchain is needed to fetch the Prometheus Operator CRDs")
    with tempfile.TemporaryDirectory() as tmp:  # outside any go.mod
        proc = subprocess.run(
            [
                go,
                "mod",
                "download",
                "-json",
                f"{PROMETHEUS_OPERATOR_MODULE}@{PROMETHEUS_OPERATOR_VERSION}",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if proc.returncode != 0:
        raise AssertionError(f"go mod download failed: {proc.stderr}")
    module_dir = Path(json.loads(proc.stdout)["Dir"])
    return [yaml.safe_load((module_dir / f).read_text()) for f in MONITORING_CRD_FILES]


def wait_established(kubectl: Any, crds: Iterable[Doc]) -> None:
    """Block until the API server serves the given CRDs."""
    names = [f"crd/{d['metadata']['name']}" for d in crds]
    if names:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
