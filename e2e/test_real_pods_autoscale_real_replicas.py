"""The queue-depth autoscaler adds real replicas that consume the backlog, and removes them
after the stabilization window, with nothing lost.

Workers are few and the mock LLM slow, so a flood of accepted requests waits in the agent's
Redis stream. The operator's pod reads that backlog and scales the Deployment; the kubelet starts
the new pods, which take work from the same stream (each one's ``pilothouse_requests_total``
grows). Once the queue is empty and the window has passed, the operator scales back to
``minReplicas``. Every request ends completed, each with exactly one LLM call.
"""

from __future__ import annotations

import json

import pytest
import real_pods
from polling import wait_until

pytestmark = pytest.mark.real_pods

REQUESTS = 40
LLM_LATENCY_MS = 1000
SCALING = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "targetQueueDepthPerReplica": 10,
    "scaleDownStabilizationSeconds": 20,
}
WORKERS = {"concurrency": 2, "queueMaxLength": 1000}


def test_the_backlog_scales_real_pods_up_they_drain_it_and_scale_down(
    real_stack: real_pods.RealStack,
) -> None:
    admin = real_stack.llm.admin
    with real_stack.namespace() as ns:
        real_stack.apply(real_stack.examples(scaling=SCALING, workers=WORKERS), ns)
        real_stack.wait_ready(ns)
        base = real_stack.service_url(ns)
        selector = f"app.kubernetes.io/instance={real_pods.AGENT}"
        admin.update_faults(latency_ms=LLM_LATENCY_MS)
        try:
            calls_before = admin.stats()["by_path"].get("/v1/chat/completions", 0)
            ids = []
            for i in range(REQUESTS):
                status, accepted = real_pods.request(
                    f"{base}/v1/requests", {"input": f"What is 2+2? ({i})"}
                )
                assert status == 202, accepted
                ids.append(accepted["request_id"])

            def serving_pods() -> list[real_pods.Doc]:
                ready = [
                    p
                    for p in real_stack.pods(ns, selector)
                    if all(s["ready"] for s in (p.get("status") or {}).get("containerStatuses", []))
                    and (p.get("status") or {}).get("containerStatuses")
                    and not p["metadata"].get("deletionTimestamp")
                ]
                return [p for p in ready if real_pods.pod_metric(p, "pilothouse_requests_total")]

            working = wait_until(
                serving_pods,
                lambda pods: len(pods) >= 2,
                what="at least two real pods answering requests from the backlog",
                timeout=180,
                interval=0.5,
            )

            def states() -> list[str]:
                out = []
                for rid in ids:
                    status, body = real_pods.request(f"{base}/v1/requests/{rid}")
                    done = body.get("state") == "done"
                    out.append(body["result"]["status"] if done else body.get("state", status))
                return out

            final = wait_until(
                states,
                lambda s: all(x in ("completed", "failed", "refused") for x in s),
                what=f"all {REQUESTS} requests answered",
                timeout=300,
                interval=1.0,
            )
        finally:
            admin.update_faults(latency_ms=0)

        assert len(working) >= 2
        assert final == ["completed"] * REQUESTS
        calls = admin.stats()["by_path"].get("/v1/chat/completions", 0) - calls_before
        assert calls == REQUESTS
        scaled_down = wait_until(
            lambda: real_stack.get("deployment", real_pods.AGENT, ns),
            lambda d: d["spec"]["replicas"] == SCALING["minReplicas"] and real_pods.rolled_out(d),
            what="the scale-down to minReplicas after the window",
            timeout=180,
            interval=1.0,
        )
        assert scaled_down["status"]["readyReplicas"] == 1
        events = json.loads(
            real_stack.kubectl(
                "get", "events", "-n", ns, "-o", "json",
                "--field-selector", "involvedObject.kind=AgentDeployment",
            )
        )["items"]  # fmt: skip
        created = {
            reason: sorted(
                e["metadata"]["creationTimestamp"] for e in events if e["reason"] == reason
            )
            for reason in ("ScaledUp", "ScaledDown")
        }
        assert created["ScaledUp"]
        assert created["ScaledDown"]
        assert created["ScaledUp"][0] < created["ScaledDown"][-1]  # up first, down last
