"""The pure parts of who-may-do-what: the SubjectAccessReview each permission asks, the brief
cache of review answers (clock passed in, bounded), the bearer header parsing, the four-eyes
requester of an escalation and the choice of one authentication in the config."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.runtime import config, errors, escalations, identities, kubeauth
from pilothouse.runtime.audit import rows
from pilothouse.runtime.identities import Permission


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_permission_is_a_verb_on_a_subresource_of_the_agent() -> None:
    asked = {
        p: kubeauth.review_attributes(p, namespace="shop", agent="support") for p in Permission
    }
    assert asked[Permission.APPROVE] == {
        "namespace": "shop",
        "verb": "update",
        "group": "pilothouse.dev",
        "resource": "agentdeployments",
        "subresource": "approvals",
        "name": "support",
    }
    assert {p: (a["verb"], a["subresource"]) for p, a in asked.items()} == {
        Permission.SUBMIT: ("create", "requests"),
        Permission.READ: ("get", "history"),
        Permission.APPROVE: ("update", "approvals"),
        Permission.DELEGATE: ("impersonate", "endusers"),
    }


def test_cached_answers_expire_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache: kubeauth.TtlCache[str, bool] = kubeauth.TtlCache(clock=clock, max_entries=2)
    cache.put("a", True, 60)
    cache.put("b", False, 5)
    clock.now += 5
    assert cache.get("b") is None  # a refusal is remembered only briefly
    assert cache.get("a") is True
    cache.put("c", True, 60)
    cache.put("d", True, 60)
    assert cache.get("a") is None  # bounded: the oldest went
    assert (cache.get("c"), cache.get("d")) == (True, True)
    cache.put("e", True, 0)  # a zero TTL caches nothing
    assert cache.get("e") is None
    clock.now += 60
    assert cache.get("c") is None


def test_only_bearer_headers_carry_a_token() -> None:
    assert identities.bearer_token("Bearer abc") == "abc"
    assert identities.bearer_token(b"bearer  abc ") == "abc"
    for bad in (None, "", "Basic abc", "Bearer", "Bearer  ", "abc"):
        assert identities.bearer_token(bad) is None


def _escalation(snapshot: dict[str, object]) -> rows.EscalationRow:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return rows.EscalationRow(
        id="esc-1",
        request_id="req-1",
        step=2,
        agent_id="support",
        action="tool_call",
        tool="initiate_return",
        params={},
        policy="refunds",
        why=None,
        snapshot=snapshot,
        status="pending",
        requested_at=now,
        expires_at=now,
    )


def test_the_requester_of_an_escalation_is_its_requests_caller() -> None:
    assert escalations.requester(_escalation({"request": {"caller": "carol"}})) == "carol"
    assert escalations.requester(_escalation({"request": {"input": "hi"}})) is None
    assert escalations.requester(_escalation({})) is None


def test_one_authentication_at_a_time() -> None:
    doc = {
        "agent": "a",
        "model": {"endpoint": "http://llm/v1", "name": "m"},
        "server": {"authTokensFile": "/t", "kubernetesAuth": {"enabled": True}},
    }
    with pytest.raises(errors.ConfigError, match="choose one authentication"):
        config.parse_config(doc)
    doc["server"] = {"kubernetesAuth": {"enabled": True}}
    assert config.parse_config(doc).server.authentication == "kubernetes"
    doc["server"] = {"authTokensFile": "/t"}
    assert config.parse_config(doc).server.authentication == "tokens"
    doc["server"] = {}
    assert config.parse_config(doc).server.authentication == "none"


def test_kubernetes_auth_outside_a_pod_needs_an_api_server() -> None:
    cfg = config.KubernetesAuthConfig(enabled=True)
    with pytest.raises(errors.ConfigError, match="KUBERNETES_SERVICE_HOST is not set"):
        kubeauth.KubernetesAuth(cfg, namespace="n", agent="a", environ={})
