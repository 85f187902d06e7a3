"""`helm test` of the release passes with its test pod run by the kubelet.

The chart's test pod (files/selftest.py in the image) resolves the operator's Service by its
cluster DNS name, checks /healthz of the operator pod behind it and that the CRDs are
established, as the chart's test ServiceAccount. Nothing is translated: real DNS, a real Service,
the real operator pod.
"""

from __future__ import annotations

import pytest
import real_pods

pytestmark = pytest.mark.real_pods


def test_helm_test_passes_against_the_operator_pod(real_stack: real_pods.RealStack) -> None:
    result = real_stack.helm.run(
        "test", real_pods.RELEASE, "-n", real_pods.OPERATOR_NAMESPACE, "--timeout=180s",
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "TEST SUITE:     pilothouse-test" in result.stdout
    assert "Phase:          Succeeded" in result.stdout
