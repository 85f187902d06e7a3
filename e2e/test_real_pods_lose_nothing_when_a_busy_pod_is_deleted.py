"""`kubectl delete pod` of a runtime pod in the middle of work loses no accepted request and
answers none twice.

Two real replicas share the agent's Redis stream. The mock LLM answers slowly, so when one pod is
deleted it holds requests in flight: the kubelet runs its preStop hook and sends SIGTERM, the
runtime drains (readiness drops, in-flight work finishes, the rest stays in the stream for the
other replica). Every request accepted with 202 must end completed, with exactly one answer in
the audit trail and exactly one LLM call per request (nothing processed twice).
"""

from __future__ import annotations

import urllib.error

import pytest
import real_pods
from polling import wait_until

pytestmark = pytest.mark.real_pods

REQUESTS = 24
LLM_LATENCY_MS = 1500
SCALING = {
    "minReplicas": 2,
    "maxReplicas": 2,
    "targetQueueDepthPerReplica": 1000,
    "scaleDownStabilizationSeconds": 10,
}


def test_deleting_a_busy_pod_loses_and_duplicates_nothing(
    real_stack: real_pods.RealStack,
) -> None:
    admin = real_stack.llm.admin
    with real_stack.namespace() as ns:
        real_stack.apply(real_stack.examples(scaling=SCALING), ns)
        real_stack.wait_ready(ns)
        base = real_stack.service_url(ns)
        selector = f"app.kubernetes.io/instance={real_pods.AGENT}"
        admin.update_faults(latency_ms=LLM_LATENCY_MS)
        try:
            calls_before = admin.stats()["by_path"].get("/v1/chat/completions", 0)
            ids = []
            for i in range(REQUESTS):
                # Each with its own id, so a POST whose answer is slow on a busy machine is
                # sent again as a client would: the same id is the same request, never a second.
                body = {"input": f"What is 2+2? ({i})", "request_id": f"busy-{ns}-{i}"}
                status, accepted = real_pods.request_retrying(f"{base}/v1/requests", body)
                assert status == 202, accepted
                ids.append(accepted["request_id"])

            pods = real_stack.pods(ns, selector)
            busy = wait_until(
                lambda: [
                    p for p in pods if real_pods.pod_metric(p, "pilothouse_inflight_requests") > 0
                ],
                bool,
                what="a runtime pod with requests in flight",
            )[0]
            real_stack.kubectl("delete", "pod", busy["metadata"]["name"], "-n", ns, "--wait=false")

            def states() -> list[str]:
                out = []
                for rid in ids:
                    try:
                        status, body = real_pods.request(f"{base}/v1/requests/{rid}")
                    except (urllib.error.URLError, TimeoutError):
                        out.append("no answer")  # asked again at the next poll
                        continue
                    done = body.get("state") == "done"
                    out.append(body["result"]["status"] if done else body.get("state", status))
                return out

            final = wait_until(
                states,
                lambda s: all(x in ("completed", "failed", "refused") for x in s),
                what=f"all {REQUESTS} accepted requests finished",
                timeout=300,
                interval=1.0,
            )
        finally:
            admin.update_faults(latency_ms=0)

        assert final == ["completed"] * REQUESTS
        calls = admin.stats()["by_path"].get("/v1/chat/completions", 0) - calls_before
        assert calls == REQUESTS  # one LLM call per request: nothing was processed twice
        id_list = ",".join(f"'{rid}'" for rid in ids)
        audited = real_pods.psql(
            real_stack,
            "SELECT request_id, count(*) FROM pilothouse.audit_requests"
            f" WHERE request_id IN ({id_list}) GROUP BY request_id",
        )
        answers = real_pods.psql(
            real_stack,
            "SELECT request_id, count(*) FROM pilothouse.audit_decisions WHERE action = 'answer'"
            f" AND request_id IN ({id_list}) GROUP BY request_id",
        )
        assert sorted(r for r, _ in audited) == sorted(ids)
        assert {n for _, n in audited} == {"1"}
        assert sorted(r for r, _ in answers) == sorted(ids)
        assert {n for _, n in answers} == {"1"}
