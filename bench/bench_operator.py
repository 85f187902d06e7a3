"""What the operator costs and how fast it reacts, on a real control plane (KWOK nodes).

Runs a local cluster (``e2e/cluster``, or ``--kubeconfig`` for an existing one), a real Redis
and ``pilothouse-operator`` as a child process, then measures, each against a baseline made in
the same process on the same cluster:

* apply -> children: an AgentDeployment created by server-side apply until its Deployment
  exists, one agent at a time (median); baseline: the client applying the same four children
  itself (ServiceAccount, ConfigMap, Service, Deployment), i.e. the API work without the operator;
* N agents to Ready: N AgentDeployments created at once until every one reports Ready (its pods
  Running and Ready on KWOK nodes); baseline: N plain one-replica Deployments until available;
* operator memory: the operator's RSS idle and with N agents, and its CPU per agent;
* scale reaction: a backlog pushed into an agent's stream until the Deployment's replicas
  change (median over rounds); baseline: the autoscaler's decision interval.

Writes ``bench/results/operator.json`` and ``.md``.

    python -m bench operator [--agents 200] [--latency-agents 30] [--scale-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e"))

import operator_harness as harness  # noqa: E402
from cluster import launcher  # noqa: E402

from pilothouse.operator import kube, manifests, rendering, resources, settings  # noqa: E402
from pilothouse.runtime import config, devservers, queue  # noqa: E402

RESULTS = Path(__file__).parent / "results"
AUTOSCALE_INTERVAL = 2.0


def _wait(
    probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float, interval: float = 0.01
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout}s; last: {value!r}")
        time.sleep(interval)


def _agent(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    doc = harness.small_agent(name, **spec)
    doc["metadata"]["namespace"] = namespace
    return doc


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# ---------------------------------------------------------------------------- measurements


def apply_to_children(client: kube.Kube, namespace: str, count: int) -> dict[str, Any]:
    operator_s, direct_s = [], []
    defaults = settings.RuntimeDefaults()
    for i in range(count):
        name = f"lat-{i}"
        start = time.perf_counter()
        client.apply(_agent(name, namespace))
        _wait(lambda name=name: client.get_deployment(namespace, name), bool, timeout=60)
        operator_s.append(time.perf_counter() - start)

        # Baseline: the same children, applied by this client itself.
        body = {
            **_agent(f"base-{i}", namespace),
            "metadata": {
                "name": f"base-{i}",
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
            },
        }
        agent = resources.parse_agent(body)
        rendered = rendering.render(agent, [], system_prompt="You help.", defaults=defaults)
        children = manifests.build_children(agent, rendered, replicas=1, defaults=defaults)
        start = time.perf_counter()
        for child in children:
            child = {**child, "metadata": {**child["metadata"], "ownerReferences": []}}
            client.apply(child)
        direct_s.append(time.perf_counter() - start)
    return {
        "agents": count,
        "operator_median_ms": _median_ms(operator_s),
        "operator_p90_ms": statistics.quantiles(operator_s, n=10)[-1] * 1000,
        "direct_apply_median_ms": _median_ms(direct_s),
        "ratio": statistics.median(operator_s) / statistics.median(direct_s),
    }


def _ready_count(cluster: launcher.Cluster, namespace: str) -> int:
    out = cluster.kubectl("get", "agd", "-n", namespace, "-o", "json", timeout=120).stdout
    return sum(1 for a in json.loads(out)["items"] if harness.is_ready(a))


def _available_count(cluster: launcher.Cluster, namespace: str) -> int:
    out = cluster.kubectl("get", "deploy", "-n", namespace, "-o", "json", timeout=120).stdout
    return sum(
        1 for d in json.loads(out)["items"] if d.get("status", {}).get("availableReplicas") == 1
    )


def many_to_ready(
    cluster: launcher.Cluster,
    client: kube.Kube,
    operator_pid: int,
    namespace: str,
    base_namespace: str,
    count: int,
) -> dict[str, Any]:
    proc = psutil.Process(operator_pid)
    rss_idle = proc.memory_info().rss
    cpu_before = sum(proc.cpu_times()[:2])
    start = time.perf_counter()
    for i in range(count):
        client.apply(_agent(f"agent-{i:03d}", namespace))
    created = time.perf_counter() - start
    _wait(
        lambda: _ready_count(cluster, namespace), lambda n: n == count, timeout=1800, interval=0.5
    )
    operator_s = time.perf_counter() - start
    cpu_s = sum(proc.cpu_times()[:2]) - cpu_before
    rss_loaded = proc.memory_info().rss

    start = time.perf_counter()
    for i in range(count):
        labels = {"app": f"base-{i}"}
        client.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"base-{i:03d}", "namespace": base_namespace},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]},
                    },
                },
            }
        )
    _wait(
        lambda: _available_count(cluster, base_namespace),
        lambda n: n == count,
        timeout=1800,
        interval=0.5,
    )
    baseline_s = time.perf_counter() - start
    return {
        "agents": count,
        "create_seconds": created,
        "all_ready_seconds": operator_s,
        "agents_per_second": count / operator_s,
        "plain_deployments_available_seconds": baseline_s,
        "ratio": operator_s / baseline_s,
        "operator_cpu_ms_per_agent": cpu_s * 1000 / count,
        "operator_rss_idle_mib": rss_idle / 2**20,
        "operator_rss_loaded_mib": rss_loaded / 2**20,
        "operator_rss_kib_per_agent": (rss_loaded - rss_idle) / 1024 / count,
    }


def scale_reaction(
    client: kube.Kube, namespace: str, redis_url: str, rounds: int
) -> dict[str, Any]:
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 4,
        "targetQueueDepthPerReplica": 5,
        "scaleDownStabilizationSeconds": 0,
    }
    client.apply(
        harness.redis_secret(redis_url)
        | {"metadata": {"name": "agent-redis", "namespace": namespace}}
    )
    client.apply(_agent("scaler", namespace, scaling=scaling))

    def replicas() -> int:
        return int(
            ((client.get_deployment(namespace, "scaler") or {}).get("spec") or {}).get(
                "replicas", 0
            )
        )

    _wait(replicas, lambda n: n == 1, timeout=60)
    cfg = config.RuntimeConfig(
        agent="scaler",
        namespace=namespace,
        model=config.ModelConfig(endpoint="http://m/v1", name="m"),
    )
    stream = queue.stream_key(cfg)
    r = redis.Redis.from_url(redis_url)
    rng = random.Random(7)
    ups, downs = [], []
    try:
        for _ in range(rounds):
            # A random phase: a backlog does not arrive just after a decision on purpose.
            time.sleep(rng.uniform(0, AUTOSCALE_INTERVAL))
            start = time.perf_counter()
            with r.pipeline(transaction=False) as pipe:
                for i in range(20):
                    pipe.xadd(stream, {"n": str(i)})
                pipe.execute()
            _wait(replicas, lambda n: n == 4, timeout=60)
            ups.append(time.perf_counter() - start)
            start = time.perf_counter()
            r.delete(stream)
            _wait(replicas, lambda n: n == 1, timeout=60)
            downs.append(time.perf_counter() - start)
    finally:
        r.close()
    return {
        "rounds": rounds,
        "interval_seconds": AUTOSCALE_INTERVAL,
        "scale_up_max_s": max(ups),
        "scale_up_median_s": statistics.median(ups),
        "scale_down_median_s": statistics.median(downs),
        "scale_up_ratio_to_interval": statistics.median(ups) / AUTOSCALE_INTERVAL,
    }


# ------------------------------------------------------------------------------------ main


def _markdown(result: dict[str, Any]) -> str:
    lat, many, mem, scale = (
        result["apply_to_children"],
        result["many_to_ready"],
        result["many_to_ready"],
        result["scale_reaction"],
    )
    m = result["machine"]
    return "\n".join(
        [
            "# Operator",
            "",
            f"Local control plane (etcd, kube-apiserver, controller-manager, scheduler, "
            f"{result['nodes']} KWOK nodes) on the same machine as the operator; {m['cpus']} CPUs, "
            f"Python {m['python']}.",
            "",
            "| measurement | Pilothouse | baseline | ratio |",
            "|---|---:|---:|---:|",
            f"| apply -> Deployment exists, median of {lat['agents']} (ms) | "
            f"{lat['operator_median_ms']:.0f} | {lat['direct_apply_median_ms']:.0f} "
            f"(client applies the 4 children itself) | {lat['ratio']:.2f} |",
            f"| {many['agents']} AgentDeployments -> all Ready (s) | "
            f"{many['all_ready_seconds']:.1f} | {many['plain_deployments_available_seconds']:.1f} "
            f"({many['agents']} plain Deployments available) | {many['ratio']:.2f} |",
            f"| backlog -> replicas scaled up, median of {scale['rounds']} (s) | "
            f"{scale['scale_up_median_s']:.2f} (max {scale['scale_up_max_s']:.2f}) | "
            f"{scale['interval_seconds']:.0f} (decision interval) | "
            f"{scale['scale_up_ratio_to_interval']:.2f} |",
            "",
            "| operator resources | value |",
            "|---|---:|",
            f"| RSS idle (MiB) | {mem['operator_rss_idle_mib']:.0f} |",
            f"| RSS with {mem['agents']} agents (MiB) | {mem['operator_rss_loaded_mib']:.0f} |",
            f"| RSS per agent (KiB) | {mem['operator_rss_kib_per_agent']:.0f} |",
            f"| CPU per agent brought to Ready (ms) | {mem['operator_cpu_ms_per_agent']:.0f} |",
            f"| agents brought to Ready per second | {many['agents_per_second']:.1f} |",
            f"| scale-down with a 0 s window, median (s) | {scale['scale_down_median_s']:.2f} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench operator", description=__doc__)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--latency-agents", type=int, default=30)
    p.add_argument("--scale-rounds", type=int, default=9)
    p.add_argument("--nodes", type=int, default=6)
    p.add_argument("--kubeconfig", help="use this cluster instead of starting one")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pilothouse-bench-operator-"))
    if args.kubeconfig:
        cluster = launcher.Cluster.existing(args.kubeconfig, log=print)
    else:
        cluster = launcher.Cluster(work / "cluster", nodes=args.nodes, log=print).start()
    namespaces = [f"bench-op-{uuid.uuid4().hex[:6]}" for _ in range(4)]
    try:
        for ns in namespaces:
            cluster.kubectl("create", "namespace", ns)
        lat_ns, many_ns, base_ns, scale_ns = namespaces
        cluster.kubectl(
            "apply",
            "-n",
            lat_ns,
            "-f",
            "-",
            input=json.dumps(harness.redis_secret("redis://127.0.0.1:1/0")),
        )
        cluster.kubectl(
            "apply",
            "-n",
            many_ns,
            "-f",
            "-",
            input=json.dumps(harness.redis_secret("redis://127.0.0.1:1/0")),
        )
        with (
            devservers.RedisServer() as redis_server,
            harness.running_operator(
                cluster, work, args=[f"--autoscale-interval={AUTOSCALE_INTERVAL}"]
            ) as operator,
        ):
            redis_server.start()
            client = kube.Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
            print("== apply -> children", flush=True)
            lat = apply_to_children(client, lat_ns, args.latency_agents)
            print(lat, flush=True)
            print(f"== {args.agents} agents -> Ready", flush=True)
            assert operator.pid is not None
            many = many_to_ready(cluster, client, operator.pid, many_ns, base_ns, args.agents)
            print(many, flush=True)
            print("== scale reaction", flush=True)
            scale = scale_reaction(client, scale_ns, redis_server.url, args.scale_rounds)
            print(scale, flush=True)
            for ns in namespaces:  # while the operator runs: agents carry its finalizer
                cluster.kubectl("delete", "agd", "--all", "-n", ns, "--wait=false", timeout=120)
            client.close()
    finally:
        for ns in namespaces:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        if not args.kubeconfig:
            cluster.stop()

    result = {
        "name": "operator",
        "nodes": args.nodes,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "apply_to_children": lat,
        "many_to_ready": many,
        "scale_reaction": scale,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "operator.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "operator.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
