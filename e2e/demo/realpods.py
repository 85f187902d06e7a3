"""The demo with real pods: the image on a real node, the operator from the chart, the agent's pods.

``make demo`` runs this mode where the machine can run real pods (Linux, root: see
e2e/cluster/README.md, "Real nodes"), and the KWOK mode (:mod:`demo.run`) elsewhere, saying why.
It builds on :mod:`real_pods` (the stack the real-pod tests share):

1. a control plane with one real node; the Pilothouse image built (Docker, local base) and
   imported into the node; Redis, PostgreSQL, the mock LLM and the tool server on the host's
   address on the node's link; ``helm install`` of the chart: the operator runs as a pod;
2. ``crds/examples/`` into namespace ``demo`` (pointed at those services, a small worker pool so
   the flood queues), and the agent's pods Ready;
3. the write-up's requests through the agent's Service (its ClusterIP), each answer checked;
4. ``pilothouse history`` of the weather question (the audit trail the pods wrote);
5. a flood with a slow LLM: the operator scales the Deployment, new pods start and drain the
   queue, and after the window it scales back down.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

import real_pods

from demo import console, run, scenes, waiting
from demo import stack as stack_mod
from pilothouse.runtime import requests

__all__ = ["STEPS", "demo"]

STEPS: Final = 5
NAMESPACE: Final = "demo"
WORKERS: Final = {"concurrency": 2, "queueMaxLength": 1000}
FLOOD_LLM_LATENCY_MS: Final = 1000
MAX_REPLICAS: Final = 4


def demo(opts: run.Options, out: console.Console, procs: stack_mod.Stack) -> None:
    """Run the five steps; raise waiting.DemoError naming the step that failed, or
    real_pods.Unavailable (before anything runs) when this machine cannot run real pods.
    Everything started is registered with ``procs``, which stops it."""
    out.step(
        "Start a control plane with a real node, build and import the image, start the services,"
        " helm install the chart (the operator runs as a pod)",
        short="real node, image, chart",
    )
    state_dir = opts.state_dir.with_name(opts.state_dir.name + "-real")
    with out.timed() as t:
        stack = procs.real_stack(state_dir, opts.workdir)  # stopped by the demo's teardown
    _show_stack(out, stack, t[0])
    _run_agent(opts, out, stack)


def _show_stack(out: console.Console, stack: real_pods.RealStack, seconds: float) -> None:
    cluster = stack.cluster
    out.done(
        "real node",
        f"{', '.join(cluster.real_node_names)}: containerd, kubelet, kube-proxy, CoreDNS;"
        f" image {stack.image} imported",
        seconds,
    )
    out.done(
        "services for the pods", f"on {cluster.host_address}: Redis, PostgreSQL, mock LLM, tools"
    )
    out.block(stack.kubectl("get", "nodes", "-o", "wide"))
    out.block(stack.kubectl("get", "pods", "-n", real_pods.OPERATOR_NAMESPACE, "-o", "wide"))


def _run_agent(opts: run.Options, out: console.Console, stack: real_pods.RealStack) -> None:
    out.step(f"Apply crds/examples/ to namespace {NAMESPACE}: the agent's pods", short="agent pods")
    scaling = {
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "targetQueueDepthPerReplica": 10,
        "scaleDownStabilizationSeconds": opts.window,
    }
    with out.timed() as t:
        stack.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
        stack.apply(stack.examples(scaling=scaling, workers=WORKERS), NAMESPACE)
        try:
            stack.wait_ready(NAMESPACE)
        except AssertionError as e:
            raise waiting.DemoError(f"the agent did not become Ready: {e}") from e
    out.done(f"agd/{real_pods.AGENT} Ready", "its pods run the image on the real node", t[0])
    out.block(stack.kubectl("get", "pilothouse,pods,service", "-n", NAMESPACE, "-o", "wide"))
    base = stack.service_url(NAMESPACE)

    out.step(f"Ask the agent through its Service ({base})", short="requests")
    session = f"demo-session-{uuid.uuid4().hex[:8]}"
    weather = ""
    for ask in scenes.ASKS:
        answer = real_pods.ask(base, ask.text, session=session if ask.in_session else None)
        result = requests.AgentResult.model_validate(answer)
        out.info(out.bold(f"> {ask.text}"))
        out.info(f"  {result.answer}")
        problems = [p for check in ask.checks if (p := check(result))]
        if problems:
            raise waiting.DemoError(f"{ask.text!r} was answered wrongly: {'; '.join(problems)}")
        if "weather" in ask.text:
            weather = result.request_id

    out.step("The decision history the pods wrote to PostgreSQL", short="history")
    out.block(_history(stack, weather))

    out.step(
        f"Flood the queue ({opts.flood} requests, a slow LLM): real replicas scale up and down",
        short="scaling",
    )
    _flood(opts, out, stack, base)


def _history(stack: real_pods.RealStack, request_id: str) -> str:
    argv = [str(Path(sys.executable).parent / "pilothouse"), "history", request_id]
    env = {**os.environ, "PILOTHOUSE_POSTGRES_DSN": stack.postgres.dsn}

    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)

    done = waiting.wait_for(
        attempt,
        lambda r: r.returncode == 0 and " answer " in r.stdout,
        what=f"the decisions of {request_id} in the audit trail",
        timeout=60,
        interval=0.5,
    )
    return f"$ pilothouse history {request_id}\n{done.stdout}"


def _flood(opts: run.Options, out: console.Console, stack: real_pods.RealStack, base: str) -> None:
    admin = stack.llm.admin
    admin.update_faults(latency_ms=FLOOD_LLM_LATENCY_MS)
    try:
        ids = []
        for i in range(opts.flood):
            status, accepted = real_pods.request(
                f"{base}/v1/requests", {"input": f"What is 2+2? ({i})"}
            )
            if status != 202:
                raise waiting.DemoError(f"request {i} was not accepted: {status} {accepted}")
            ids.append(accepted["request_id"])
        out.done(
            "flood accepted", f"{len(ids)} requests (202), LLM latency {FLOOD_LLM_LATENCY_MS} ms"
        )
        seen: tuple[Any, ...] = ()
        peak = 1
        deadline = time.monotonic() + 300
        while True:
            deployment = stack.get("deployment", real_pods.AGENT, NAMESPACE)
            status = deployment.get("status") or {}
            now = (deployment["spec"]["replicas"], status.get("readyReplicas", 0))
            if now != seen:
                out.info(f"  replicas {now[0]}, ready pods {now[1]}")
                seen = now
            peak = max(peak, now[1])
            pending = [r for r in ids if not _done(base, r)] if now[0] == 1 and peak > 1 else ids
            if peak > 1 and not pending and real_pods.rolled_out(deployment) and now[0] == 1:
                break
            if time.monotonic() > deadline:
                raise waiting.DemoError(f"no scale-up and back down within 300 s (last {now})")
            time.sleep(1)
    finally:
        with contextlib.suppress(Exception):
            admin.update_faults(latency_ms=0)
    out.done("scaled up and down", f"peak {peak} ready pods; all {len(ids)} requests answered")
    reasons = stack.kubectl(
        "get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp",
        "--field-selector", "involvedObject.kind=AgentDeployment",
        "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    )  # fmt: skip
    out.block("\n".join(line for line in reasons.splitlines() if line.startswith("Scaled")))


def _done(base: str, request_id: str) -> bool:
    _, body = real_pods.request(f"{base}/v1/requests/{request_id}")
    return body.get("state") == "done"
