"""Fixtures for tests against a real Kubernetes API server.

``k8s_cluster`` is one control plane per test session, started from ``e2e/cluster`` (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and KWOK's fake nodes as local
processes) and stopped at the end, also when tests fail. Set ``PILOTHOUSE_TEST_KUBECONFIG``
to run the same tests against a cluster you already have (kind, CI); that cluster is left
as it was found, apart from what the tests create and delete.

Further fixtures (the operator under test, charts) build on ``k8s_cluster``: it gives the
kubeconfig path, ``kubectl(...)``, and the kubectl and helm binaries. ``operator`` (one operator
process per test module) and ``namespace`` (a namespace of that operator with an ``agent-redis``
Secret pointing nowhere) serve the ``test_operator_*`` modules; a module needing other ones
defines its own, which takes precedence. ``promtool`` is Prometheus's checker at the pinned
version (e2e/cluster/versions.env), built once into ``.cache/prometheus/``.

``real_stack`` is the one cluster with a real node per session for the ``test_real_pods_*``
modules (e2e/real_pods.py): the image as pods, the operator from the chart, Redis, PostgreSQL, the
mock LLM and the tool server where pods reach them. It is started only when such a test runs,
and skips with the reason where the machine cannot run real pods (``PILOTHOUSE_TEST_REAL_PODS=1``
fails instead).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:  # `cluster` (e2e/cluster) is a package beside this file
    sys.path.insert(0, str(E2E_DIR))

import operator_harness as h  # noqa: E402
import real_pods  # noqa: E402
from cluster import binaries, launcher  # noqa: E402
from cluster.promtool import Promtool  # noqa: E402

KUBECONFIG_ENV = "PILOTHOUSE_TEST_KUBECONFIG"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there


def _state_dir() -> Path:
    """Separate from `make cluster-up`'s, and per xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return launcher.DEFAULT_STATE_DIR.with_name(f"cluster-e2e{'-' + worker if worker else ''}")


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[launcher.Cluster]:
    """A Kubernetes cluster for the whole session: local processes, or $PILOTHOUSE_TEST_KUBECONFIG.

    Attributes tests use: ``kubeconfig`` (Path), ``kubectl(*args, input=None, check=True)``,
    ``kubectl_path``, ``helm_path``, ``bin_dir``, ``env()`` (KUBECONFIG and PATH set).
    """

    def log(msg: str) -> None:
        print(f"[k8s_cluster] {msg}", file=sys.stderr, flush=True)

    existing = os.environ.get(KUBECONFIG_ENV)
    if existing:
        yield launcher.Cluster.existing(existing, log=log)
        return
    cluster = launcher.Cluster(_state_dir(), nodes=3, log=log)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    """promtool of the pinned Prometheus (versions.env), built from its Go module when missing."""

    def log(msg: str) -> None:
        print(f"[promtool] {msg}", file=sys.stderr, flush=True)

    return Promtool(binaries.build_promtool(log=log))


@pytest.fixture
def k8s_namespace(k8s_cluster: launcher.Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: launcher.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[h.OperatorProcess]:
    """The operator for one test module: its own process, so a module may kill and restart it."""
    with h.running_operator(k8s_cluster, tmp_path_factory.mktemp("operator")) as proc:
        yield proc


@pytest.fixture
def namespace(k8s_cluster: launcher.Cluster, operator: h.OperatorProcess) -> Iterator[str]:
    """A fresh namespace for ``operator``, with the ``agent-redis`` Secret its agents reference."""
    with h.agent_namespace(k8s_cluster) as ns:
        h.apply(k8s_cluster, ns, h.redis_secret(UNREACHABLE_REDIS))
        yield ns


@pytest.fixture(scope="session")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[real_pods.RealStack]:
    """Pilothouse on a real node, shared by every real-pod test of the session."""
    state_dir = _state_dir().with_name(_state_dir().name.replace("cluster-e2e", "cluster-e2e-real"))
    context = real_pods.real_stack(state_dir, tmp_path_factory.mktemp("real-stack"))
    try:
        stack = context.__enter__()
    except real_pods.Unavailable as e:
        if os.environ.get(real_pods.MODE_ENV) == "1":
            pytest.fail(f"{real_pods.MODE_ENV}=1 but real pods cannot run here: {e}")
        pytest.skip(f"real pods cannot run here: {e}")
    try:
        yield stack
    finally:
        context.__exit__(None, None, None)
