"""Deleting an agent deletes its Redis keys, and only its; an unreachable Redis delays the
deletion by the timeout at most, leaving a record of what was left.

Keys are made with the runtime's own key functions (queue, sessions, circuit breakers, budgets,
rate limits) for the agent, for an agent whose name extends it, and for the same name in another
namespace. More keys than one pass deletes prove the passes resume; the Events say what happened
in order (``RedisCleanupRetrying`` before ``RedisKeysLeft``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import operator_harness as h
import pytest
import redis
from cluster.launcher import Cluster

from pilothouse.operator import cleanups
from pilothouse.runtime import config, devservers, queue, sessions
from pilothouse.runtime.policies import costs, rates

AGENT = "forgetful"
PREFIX = "pilothouse"
MANY = cleanups.KEYS_PER_PASS + 2345  # more than one pass


@pytest.fixture(scope="module")
def redis_server() -> Iterator[devservers.RedisServer]:
    with devservers.RedisServer() as server:
        yield server.start()


def _keys_of(client: redis.Redis, namespace: str, agent: str) -> list[str]:
    cfg = config.RuntimeConfig(
        agent=agent, namespace=namespace, model=config.ModelConfig(endpoint="http://m/v1", name="m")
    )
    store = sessions.SessionStore(
        None,  # type: ignore[arg-type]  # only its key names are used
        config.SessionConfig(),
        key_prefix=PREFIX,
        namespace=namespace,
        agent=agent,
    )
    keys = [
        queue.stream_key(cfg),
        queue.dead_letter_key(cfg),
        queue.state_key(cfg, "r-1"),
        *store.keys("s-1"),
        f"{PREFIX}:breaker:{namespace}/{agent}:model-0",
        costs.spend_key(PREFIX, namespace, agent),
        rates.rate_key(PREFIX, namespace, agent, "cost-guard", "agent"),
    ]
    for key in keys:
        client.set(key, "x")
    return keys


def _events(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    found = h.items(cluster, "events", namespace, f"--field-selector=involvedObject.name={AGENT}")
    return sorted(found, key=lambda e: (str(e.get("firstTimestamp")), str(e["metadata"]["name"])))


def test_deletion_removes_the_agents_keys_and_no_others(
    k8s_cluster: Cluster, namespace: str, redis_server: devservers.RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    other_namespace = f"elsewhere-{uuid.uuid4().hex[:6]}"
    mine = _keys_of(client, namespace, AGENT)
    pipe = client.pipeline(transaction=False)
    for i in range(MANY):
        pipe.set(f"{PREFIX}:{namespace}:{AGENT}:request:bulk-{i}", "x")
    pipe.execute()
    kept = _keys_of(client, namespace, AGENT + "-2") + _keys_of(client, other_namespace, AGENT)
    h.apply(k8s_cluster, namespace, h.redis_secret(redis_server.url, "real-redis"))
    agent = h.small_agent(AGENT, redis={"urlSecretRef": {"name": "real-redis", "key": "url"}})
    h.apply(k8s_cluster, namespace, agent)
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")

    k8s_cluster.kubectl("delete", "agd", AGENT, "-n", namespace, "--timeout=120s")

    assert client.exists(*mine) == 0
    assert not list(client.scan_iter(match=f"{PREFIX}:{namespace}:{AGENT}:*"))
    assert client.exists(*kept) == len(kept)
    deleted = [e for e in _events(k8s_cluster, namespace) if e["reason"] == "RedisKeysDeleted"]
    assert len(deleted) == 1
    assert f"deleted {len(mine) + MANY} Redis key(s)" in str(deleted[0]["message"])
    client.close()


def test_an_unreachable_redis_delays_deletion_then_leaves_a_record(
    k8s_cluster: Cluster, namespace: str
) -> None:
    h.apply(k8s_cluster, namespace, h.small_agent(AGENT))  # agent-redis: nothing listens there
    h.wait_for_agent(k8s_cluster, namespace, AGENT, h.is_ready, what="Ready")

    k8s_cluster.kubectl("delete", "agd", AGENT, "-n", namespace, "--timeout=120s")

    assert h.get(k8s_cluster, "agd", AGENT, namespace) is None
    reasons = [e["reason"] for e in _events(k8s_cluster, namespace)]
    assert "RedisCleanupRetrying" in reasons
    assert "RedisKeysLeft" in reasons
    assert reasons.index("RedisCleanupRetrying") < reasons.index("RedisKeysLeft")
    left = next(e for e in _events(k8s_cluster, namespace) if e["reason"] == "RedisKeysLeft")
    assert f"{PREFIX}:{namespace}:{AGENT}:*" in str(left["message"])
