"""The autoscaler follows the agent's queue in a real Redis: up at once, down after the window,
and it holds (and says why) when Redis cannot be read."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import operator_harness as h
import pytest
import redis
from cluster.launcher import Cluster
from polling import wait_until

from pilothouse.runtime import config, devservers, queue

AGENT = "scaler"
WINDOW = 5
SCALING = {
    "minReplicas": 1,
    "maxReplicas": 6,
    "targetQueueDepthPerReplica": 5,
    "scaleDownStabilizationSeconds": WINDOW,
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[devservers.RedisServer]:
    with devservers.RedisServer() as server:
        yield server.start()


@pytest.fixture  # its own: the Secret points at this module's Redis and the agent is Ready
def namespace(
    k8s_cluster: Cluster, operator: h.OperatorProcess, redis_server: devservers.RedisServer
) -> Iterator[str]:
    with h.agent_namespace(k8s_cluster) as ns:
        h.apply(
            k8s_cluster, ns, h.redis_secret(redis_server.url), h.small_agent(AGENT, scaling=SCALING)
        )
        h.wait_for_agent(k8s_cluster, ns, AGENT, h.is_ready, what="Ready")
        yield ns


def _stream(namespace: str) -> str:
    cfg = config.RuntimeConfig(
        agent=AGENT, namespace=namespace, model=config.ModelConfig(endpoint="http://m/v1", name="m")
    )
    return queue.stream_key(cfg)


def _replicas(cluster: Cluster, namespace: str) -> int:
    deployment = h.get(cluster, "deployment", AGENT, namespace) or {}
    return int(deployment.get("spec", {}).get("replicas", -1))


def _push(url: str, namespace: str, count: int) -> None:
    client = redis.Redis.from_url(url)
    try:
        for i in range(count):
            client.xadd(_stream(namespace), {"request": str(i)})
    finally:
        client.close()


def test_a_backlog_scales_up_at_once_and_down_after_the_window(
    k8s_cluster: Cluster, namespace: str, redis_server: devservers.RedisServer
) -> None:
    _push(redis_server.url, namespace, 23)  # ceil(23 / 5) = 5

    wait_until(
        lambda: _replicas(k8s_cluster, namespace),
        lambda n: n == 5,
        timeout=10,
        what="5 replicas within 10 s of the backlog",
    )
    agent = h.wait_for_agent(
        k8s_cluster,
        namespace,
        AGENT,
        lambda a: a.get("status", {}).get("queueDepth") == 23,
        what="the queue depth in status",
    )
    assert agent["status"]["desiredReplicas"] == 5
    assert agent["status"]["lastScaleTime"]
    assert h.condition(agent, "ScalingActive")["status"] == "True"

    client = redis.Redis.from_url(redis_server.url)
    client.delete(_stream(namespace))
    client.close()
    drained = time.monotonic()
    wait_until(
        lambda: _replicas(k8s_cluster, namespace),
        lambda n: n == 1,
        timeout=30,
        what="the scale-down once the window has passed",
    )
    waited = time.monotonic() - drained

    # The last high recommendation was made at most one decision interval before the drain.
    assert waited >= WINDOW - 1
    events = h.items(
        k8s_cluster, "events", namespace, f"--field-selector=involvedObject.name={AGENT}"
    )
    reasons = [e["reason"] for e in events]
    assert "ScaledUp" in reasons
    assert "ScaledDown" in reasons


def _decisions(operator: h.OperatorProcess, reason: str) -> float:
    pattern = rf'pilothouse_operator_autoscaler_decisions_total{{reason="{reason}"}} (\S+)'
    found = re.search(pattern, operator.metrics())
    return float(found.group(1)) if found else 0.0


def test_an_unreachable_redis_holds_the_replicas_and_says_why(
    k8s_cluster: Cluster,
    namespace: str,
    redis_server: devservers.RedisServer,
    operator: h.OperatorProcess,
) -> None:
    _push(redis_server.url, namespace, 12)  # 3 replicas
    wait_until(
        lambda: _replicas(k8s_cluster, namespace), lambda n: n == 3, timeout=10, what="3 replicas"
    )

    redis_server.stop()
    try:
        agent = h.wait_for_agent(
            k8s_cluster,
            namespace,
            AGENT,
            lambda a: h.condition(a, "ScalingActive").get("reason") == "BacklogUnavailable",
            what="ScalingActive=False: BacklogUnavailable",
        )
        held = _decisions(operator, "BacklogUnavailable")
        wait_until(
            lambda: _decisions(operator, "BacklogUnavailable"),
            lambda n: n >= held + 3,
            what="three more decisions without a backlog",
        )

        assert h.condition(agent, "ScalingActive")["status"] == "False"
        assert "cannot read the backlog" in h.condition(agent, "ScalingActive")["message"]
        assert _replicas(k8s_cluster, namespace) == 3
        assert h.is_ready(h.get(k8s_cluster, "agd", AGENT, namespace) or {})  # pods still serve
    finally:
        redis_server.start()

    h.wait_for_agent(
        k8s_cluster,
        namespace,
        AGENT,
        lambda a: h.condition(a, "ScalingActive").get("status") == "True",
        what="ScalingActive=True once Redis is back",
    )
