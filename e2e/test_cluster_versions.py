"""The pinned versions (e2e/cluster/versions.env) are the ones that run: Kubernetes, promtool.

go.mod is generated from versions.env; a stale go.mod would build another version than
the pin says, and a server without version ldflags reports v0.0.0, which breaks helm's
kubeVersion checks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest
from cluster import binaries
from cluster.launcher import Cluster
from cluster.promtool import Promtool


def test_go_mod_requires_the_pinned_kubernetes_and_published_staging_modules() -> None:
    versions = binaries.read_versions()
    go_mod = binaries.GO_MOD.read_text()

    assert binaries.go_mod_version() == versions.kubernetes
    replaces = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (\S+)$", go_mod, re.MULTILINE)
    assert len(replaces) > 20  # every staging module of k8s.io/kubernetes
    assert all(old == new and version == versions.staging for old, new, version in replaces)


@pytest.mark.skipif(
    bool(os.environ.get("PILOTHOUSE_TEST_KUBECONFIG")), reason="an existing cluster runs its own"
)
def test_local_server_reports_the_pinned_version(k8s_cluster: Cluster) -> None:
    version = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)

    pinned = binaries.read_versions().kubernetes
    assert version["serverVersion"]["gitVersion"] == pinned
    assert version["clientVersion"]["gitVersion"] == pinned


def test_promtool_reports_the_pinned_prometheus(promtool: Promtool) -> None:
    versions = binaries.read_versions()

    reported = promtool.run("--version").stdout

    assert f"promtool, version {versions.prometheus_release} " in reported
    assert binaries.promtool_is_built(versions)


@pytest.mark.parametrize("pin", ["v3.16.0", "v0.16.0", "0.316.0", "v0.316"])
def test_a_prometheus_pin_that_is_not_a_module_version_is_refused(pin: str) -> None:
    versions = dataclasses.replace(binaries.read_versions(), prometheus=pin)

    with pytest.raises(binaries.BuildError, match=f"PROMETHEUS_VERSION={pin}: expected"):
        _ = versions.prometheus_release


def test_prometheus_module_versions_name_their_release() -> None:
    versions = binaries.read_versions()

    assert dataclasses.replace(versions, prometheus="v0.316.0").prometheus_release == "3.16.0"
    assert dataclasses.replace(versions, prometheus="v0.305.2").prometheus_release == "3.5.2"
    assert dataclasses.replace(versions, prometheus="v0.1012.0").prometheus_release == "10.12.0"
