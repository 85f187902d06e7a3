"""A policy change rolls the agent's real pods, and the new pods enforce the new policy.

The operator puts a hash of the rendered config (policies resolved into it) on the pod template,
so editing an AgentPolicy rolls the Deployment. Checked by behaviour, not by the hash: a request
the old pods answer is refused by the pods that replaced them.
"""

from __future__ import annotations

import json

import pytest
import real_pods
from polling import wait_until

from pilothouse.runtime import requests

pytestmark = pytest.mark.real_pods

QUESTION = "What's the weather in Tokyo?"


def test_a_new_deny_pattern_rolls_the_pods_and_the_new_pods_refuse(
    real_stack: real_pods.RealStack,
) -> None:
    with real_stack.namespace() as ns:
        real_stack.apply(real_stack.examples(), ns)
        real_stack.wait_ready(ns)
        base = real_stack.service_url(ns)
        selector = f"app.kubernetes.io/instance={real_pods.AGENT}"
        before = {p["metadata"]["name"] for p in real_stack.pods(ns, selector)}
        answered = requests.AgentResult.model_validate(real_pods.ask(base, QUESTION))
        assert answered.status == "completed", answered

        policy = real_stack.get("agentpolicy", "safety", ns)
        patterns = [*policy["spec"]["safety"]["denyPatterns"], r"\bweather\b"]
        patch = {"spec": {"safety": {"denyPatterns": patterns}}}
        real_stack.kubectl(
            "patch", "agentpolicy", "safety", "-n", ns, "--type=merge", "-p", json.dumps(patch)
        )

        def new_pods_only() -> list[real_pods.Doc]:
            deployment = real_stack.get("deployment", real_pods.AGENT, ns)
            pods = real_stack.pods(ns, selector)
            if not real_pods.rolled_out(deployment):
                return []
            return pods

        pods = wait_until(
            new_pods_only,
            lambda ps: bool(ps) and not {p["metadata"]["name"] for p in ps} & before,
            what="the Deployment rolled to new pods only",
            timeout=real_pods.READY_TIMEOUT,
        )
        assert all(s["ready"] for p in pods for s in p["status"]["containerStatuses"]), [
            p["status"] for p in pods
        ]

        refused = requests.AgentResult.model_validate(real_pods.ask(base, QUESTION))
        assert refused.status == "refused", refused
        assert refused.policy == "safety", refused
        assert refused.actions == ()
