"""Upgrading from the previous release: the CRDs upgrade with the chart, and nothing is lost.

The previous release is the chart as it was at :data:`PREVIOUS_RELEASE` (the commit before the
CRDs became templates), taken from git and installed the way it installed then: its CRDs from
its ``crds/`` folder, which Helm installs once and never upgrades. This operator, started
against those CRDs, refuses to apply anything while they lack fields it knows (agents Stalled,
reason ``CRDOutdated``); ``helm upgrade --take-ownership`` to this checkout's chart adopts and
upgrades the CRDs (kept on uninstall), the agents become Ready without being touched otherwise,
and ``helm rollback`` to the previous release leaves the CRDs and every agent in place.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_chart
import operator_harness as h
import pytest
import yaml
from cluster.launcher import Cluster

from pilothouse.operator import crdchecks, crdgen

PREVIOUS_RELEASE = "022327e1f30998ff5e13f12eb946d84a58a75740"
"""The last commit whose chart installed the CRDs from its crds/ folder."""
CRD_NAMES = ("agentdeployments.pilothouse.dev", "agentpolicies.pilothouse.dev")
AGENT = "kept"


def _git(*args: str) -> bytes:
    result = subprocess.run(
        ["git", "-C", str(h.ROOT), *args], capture_output=True, check=False, timeout=60
    )
    if result.returncode != 0:
        pytest.fail(
            f"git {' '.join(args)} failed ({result.stderr.decode().strip()}): the upgrade test "
            f"needs this checkout's history back to {PREVIOUS_RELEASE[:12]} (clone without --depth)"
        )
    return result.stdout


@pytest.fixture(scope="module")
def previous_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's chart, extracted from git."""
    root = tmp_path_factory.mktemp("previous")
    archive = _git("archive", "--format=tar", PREVIOUS_RELEASE, "charts/pilothouse")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    chart = root / "charts" / "pilothouse"
    assert (chart / "crds").is_dir(), "the previous release installs its CRDs from crds/"
    return chart


@pytest.fixture
def helm(tmp_path: Path, k8s_cluster: Cluster) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path / "helm").with_kubeconfig(k8s_cluster.kubeconfig)


@pytest.fixture
def restore_crds(k8s_cluster: Cluster) -> Iterator[None]:
    """Whatever happens here, the session's other tests get this checkout's CRDs back."""
    yield
    h.install_crds(k8s_cluster)


def served(cluster: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
    return found


def generated(name: str) -> dict[str, Any]:
    return next(
        c for c in (crdgen.agent_crd(), crdgen.policy_crd()) if c["metadata"]["name"] == name
    )


def test_upgrade_adopts_and_upgrades_the_crds_and_rollback_keeps_every_agent(
    k8s_cluster: Cluster,
    k8s_namespace: str,
    helm: helm_chart.Helm,
    previous_chart: Path,
    restore_crds: None,
    tmp_path: Path,
) -> None:
    release = f"up-{uuid.uuid4().hex[:6]}"
    ns = k8s_namespace
    # A cluster that ran the previous release: its CRDs, as its crds/ folder installed them.
    k8s_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(previous_chart / "crds")
    )
    old = {name: served(k8s_cluster, name) for name in CRD_NAMES}
    missing = {name: crdchecks.missing_fields(generated(name), old[name]) for name in CRD_NAMES}
    helm.run("install", release, str(previous_chart), "-n", ns, "--wait", "--timeout=120s")

    operator = h.OperatorProcess(k8s_cluster, log_dir=tmp_path, redis_url=None).start()
    try:
        h.apply(k8s_cluster, ns, h.redis_secret("redis://127.0.0.1:1/0"), h.small_agent(AGENT))
        if any(missing.values()):
            # This operator knows fields the old CRDs would prune: it applies nothing.
            stalled = h.wait_for_agent(
                    k8s_cluster, ns, AGENT,
                    lambda o: h.condition(o, "Stalled").get("reason") == "CRDOutdated",
                    what="Stalled, CRDOutdated",
                )  # fmt: skip
            message = h.condition(stalled, "Stalled")["message"]
            first = next(name for name in CRD_NAMES if missing[name])
            assert first in message
            assert missing[first][0] in message
            assert h.get(k8s_cluster, "deployment", AGENT, ns) is None
        else:
            h.wait_for_agent(k8s_cluster, ns, AGENT, h.is_ready, what="Ready")

        helm.run(
                "upgrade", release, str(helm_chart.CHART_DIR), "-n", ns,
                "--take-ownership", "--wait", "--timeout=120s",
            )  # fmt: skip

        # The CRDs are now the release's, upgraded to what this operator generates, and kept.
        for name in CRD_NAMES:
            crd = served(k8s_cluster, name)
            assert crdchecks.missing_fields(generated(name), crd) == [], name
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
            assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        # The operator notices on its own (no restart) and the agent runs.
        agent = h.wait_for_agent(
            k8s_cluster, ns, AGENT, h.is_ready, what="Ready after the upgrade", timeout=120
        )
        assert h.condition(agent, "Stalled").get("status") == "False"
        deployment = h.get(k8s_cluster, "deployment", AGENT, ns)
        assert deployment is not None
        template = deployment["spec"]["template"]

        # Every field of this release is accepted and kept on the object (not pruned).
        full = yaml.safe_load((h.EXAMPLES / "20-agent-customer-support.yaml").read_text())
        full["metadata"] = {"name": "full"}
        h.apply(k8s_cluster, ns, full)
        stored = h.get(k8s_cluster, "agd", "full", ns)
        assert stored is not None
        assert _kept(stored["spec"], full["spec"]) == [], "fields pruned or changed"

        # Rolling back to the previous release keeps the CRDs (and so every agent).
        helm.run("rollback", release, "1", "-n", ns, "--wait", "--timeout=120s")
        for name in CRD_NAMES:
            assert k8s_cluster.kubectl("get", "crd", name, check=False).returncode == 0
        assert h.get(k8s_cluster, "agd", AGENT, ns) is not None
        assert h.get(k8s_cluster, "agd", "full", ns) is not None
        # Nothing about the agent changed, so its pods were not rolled by any of this.
        after = h.get(k8s_cluster, "deployment", AGENT, ns)
        assert after is not None
        assert after["spec"]["template"] == template

    finally:
        k8s_cluster.kubectl("delete", "agd", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()

    helm.run("uninstall", release, "-n", ns, "--wait", "--timeout=120s")
    for name in CRD_NAMES:
        assert k8s_cluster.kubectl("get", "crd", name, check=False).returncode == 0


def _kept(stored: Any, applied: Any, path: str = "spec") -> list[str]:
    """Paths of what was applied that the stored object lacks or changed (defaults may be added)."""
    if isinstance(applied, dict):
        if not isinstance(stored, dict):
            return [path]
        return [p for k, v in applied.items() for p in _kept(stored.get(k), v, f"{path}.{k}")]
    if isinstance(applied, list):
        if not isinstance(stored, list) or len(stored) != len(applied):
            return [path]
        return [
            p
            for i, (s, a) in enumerate(zip(stored, applied, strict=True))
            for p in _kept(s, a, f"{path}[{i}]")
        ]
    return [] if stored == applied else [path]
