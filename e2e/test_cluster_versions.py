"""The one pinned Kubernetes version (e2e/cluster/versions.env) is the one that runs.

go.mod is generated from versions.env; a stale go.mod would build another version than
the pin says, and a server without version ldflags reports v0.0.0, which breaks helm's
kubeVersion checks.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from cluster import binaries
from cluster.launcher import Cluster


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
