"""The agent's pods run in a namespace that enforces the restricted Pod Security Standard.

Admission rejects pods that do not meet it, so pods that exist, run and answer prove the rendered
pod spec (non-root numeric UID, no capabilities, no privilege escalation, seccomp RuntimeDefault,
read-only root file system with emptyDirs) is both admissible and workable with the real image.
"""

from __future__ import annotations

import pytest
import real_pods

from pilothouse.runtime import requests

pytestmark = pytest.mark.real_pods

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def test_examples_run_and_answer_under_restricted_pod_security(
    real_stack: real_pods.RealStack,
) -> None:
    with real_stack.namespace(labels=RESTRICTED) as ns:
        real_stack.apply(real_stack.examples(), ns)
        real_stack.wait_ready(ns)

        pods = real_stack.pods(ns, f"app.kubernetes.io/instance={real_pods.AGENT}")
        assert pods
        for pod in pods:
            security = pod["spec"]["containers"][0]["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert pod["status"]["containerStatuses"][0]["ready"] is True
        answer = requests.AgentResult.model_validate(
            real_pods.ask(real_stack.service_url(ns), "What is 2+2?")
        )
        assert answer.status == "completed", answer
        assert "4" in answer.answer, answer
        assert ns in real_stack.kubectl("get", "namespace", ns, "--show-labels")
