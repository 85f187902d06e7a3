"""Agent pods meet the restricted Pod Security Standard and carry what operations needs.

Whatever the agent's podTemplate says: non-root, no escalation, no capabilities, RuntimeDefault
seccomp, read-only root with emptyDirs where the runtime writes; secrets only by reference;
probes, scrape annotations and the config hash that rolls the pods.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_support import DEFAULTS, MINIMAL_AGENT, agent_body, support_agent

from pilothouse.operator import labels, manifests, rendering, resources


def _deployment(agent: resources.Agent) -> tuple[dict[str, Any], rendering.RenderedConfig]:
    rendered = rendering.render(agent, [], system_prompt="p", defaults=DEFAULTS)
    return manifests.build_deployment(agent, rendered, replicas=2, defaults=DEFAULTS), rendered


AGENTS = {
    "example": support_agent,
    "minimal": lambda: resources.parse_agent(agent_body(MINIMAL_AGENT)),
    "overridden": lambda: resources.parse_agent(
        agent_body(
            {
                **MINIMAL_AGENT,
                "podTemplate": {
                    "securityContext": {"runAsUser": 4242, "runAsGroup": 0, "fsGroup": 0}
                },
            }
        )
    ),
}


@pytest.fixture(params=sorted(AGENTS))
def deployment(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _deployment(AGENTS[request.param]())[0]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_pods_run_as_non_root_with_runtime_default_seccomp(deployment: dict[str, Any]) -> None:
    ctx = _pod(deployment)["securityContext"]

    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] >= 1
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_containers_drop_everything_and_cannot_escalate(deployment: dict[str, Any]) -> None:
    for container in _pod(deployment)["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["runAsNonRoot"] is True
        assert ctx.get("privileged", False) is False
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_no_host_namespaces_paths_or_ports(deployment: dict[str, Any]) -> None:
    pod = _pod(deployment)

    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert all("hostPath" not in v for v in pod["volumes"])
    assert all("hostPort" not in p for c in pod["containers"] for p in c["ports"])


def test_writable_paths_are_empty_dirs(deployment: dict[str, Any]) -> None:
    pod = _pod(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}

    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/pilothouse/spool"]]
    assert volumes[mounts[rendering.CONFIG_DIR]]["configMap"]["name"].endswith("-runtime")


def test_secrets_are_referenced_never_inlined() -> None:
    deployment, rendered = _deployment(support_agent())
    env = _pod(deployment)["containers"][0]["env"]

    assert env
    for var in env:
        assert "value" not in var
        assert set(var["valueFrom"]) == {"secretKeyRef"}
    assert {v["name"] for v in env} == {e.name for e in rendered.secret_env}


def test_probes_scraping_and_the_serve_command(deployment: dict[str, Any]) -> None:
    container = _pod(deployment)["containers"][0]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]

    assert container["command"] == ["pilothouse", "serve", "--config", rendering.CONFIG_PATH]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_the_pod_template_carries_the_config_hash() -> None:
    deployment, rendered = _deployment(support_agent())

    meta = deployment["spec"]["template"]["metadata"]
    assert meta["annotations"][labels.CONFIG_HASH_ANNOTATION] == rendered.hash


def test_children_are_owned_by_the_agent_as_controller() -> None:
    agent = support_agent()
    rendered = rendering.render(agent, [], system_prompt="p", defaults=DEFAULTS)

    for child in manifests.build_children(agent, rendered, replicas=1, defaults=DEFAULTS):
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "pilothouse.dev/v1alpha1",
            "kind": "AgentDeployment",
            "name": "customer-support",
            "uid": "uid-customer-support",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert child["metadata"]["labels"][labels.MANAGED_BY_KEY] == "pilothouse-operator"
        assert child["metadata"]["labels"][labels.AGENT_KEY] == "customer-support"


def test_the_grace_period_covers_the_workers_shutdown() -> None:
    agent = resources.parse_agent(
        agent_body({**MINIMAL_AGENT, "workers": {"shutdownGraceSeconds": 42.5}})
    )

    deployment, _ = _deployment(agent)

    assert _pod(deployment)["terminationGracePeriodSeconds"] == 53  # 42.5 + 5 preStop + 5


def test_a_terminating_pod_keeps_serving_while_its_endpoints_are_removed() -> None:
    deployment, _ = _deployment(support_agent())

    [container] = _pod(deployment)["containers"]

    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
