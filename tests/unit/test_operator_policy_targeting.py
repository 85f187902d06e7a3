"""Which policies apply to which agents: references in order, then label selectors by name."""

from __future__ import annotations

from typing import Any

import pytest
from operator_support import MINIMAL_AGENT, agent_body, example_policies, policy_body, support_agent

from pilothouse.operator import resources, selectors, targeting


def _selector(**kw: Any) -> selectors.LabelSelector:
    return selectors.LabelSelector.model_validate(kw)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"any": "thing"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["1", "2"]}]},
            {"tier": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["1"]}]},
            {"tier": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "beta", "operator": "Exists"}]}, {"beta": ""}, True),
        ({"matchExpressions": [{"key": "beta", "operator": "DoesNotExist"}]}, {"beta": ""}, False),
        (
            {
                "matchLabels": {"team": "a"},
                "matchExpressions": [{"key": "beta", "operator": "Exists"}],
            },
            {"team": "a"},
            False,
        ),
    ],
)
def test_label_selectors_follow_kubernetes_semantics(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert selectors.matches(_selector(**selector), labels) is expected


def test_the_example_agent_gets_its_references_then_its_selector_matches() -> None:
    selection = targeting.select_policies(support_agent(), example_policies())

    assert [p.meta.name for p in selection.applied] == ["cost-guard", "safety", "returns-review"]
    assert selection.missing == ()


def test_references_keep_the_agents_order_and_selected_policies_follow_by_name() -> None:
    spec = {**MINIMAL_AGENT, "policyRefs": [{"name": "zeta"}, {"name": "alpha"}]}
    agent = resources.parse_agent(agent_body(spec, labels={"team": "a"}))
    everyone = {"targetSelector": {}}
    team_a = {"targetSelector": {"matchLabels": {"team": "a"}}}
    policies = [
        resources.parse_policy(policy_body({}, name="alpha")),
        resources.parse_policy(policy_body(team_a, name="mid")),
        resources.parse_policy(policy_body(everyone, name="beta")),
        resources.parse_policy(policy_body({}, name="zeta")),
        resources.parse_policy(
            policy_body({"targetSelector": {"matchLabels": {"team": "b"}}}, name="other")
        ),
        resources.parse_policy(policy_body(everyone, name="alpha-dup")),
    ]

    selection = targeting.select_policies(agent, policies)

    assert [p.meta.name for p in selection.applied] == ["zeta", "alpha", "alpha-dup", "beta", "mid"]


def test_a_referenced_policy_that_also_selects_the_agent_applies_once() -> None:
    spec = {**MINIMAL_AGENT, "policyRefs": [{"name": "both"}]}
    agent = resources.parse_agent(agent_body(spec, labels={"team": "a"}))
    both = resources.parse_policy(policy_body({"targetSelector": {}}, name="both"))

    assert [p.meta.name for p in targeting.select_policies(agent, [both]).applied] == ["both"]


def test_missing_references_are_reported_by_name() -> None:
    spec = {**MINIMAL_AGENT, "policyRefs": [{"name": "gone"}, {"name": "here"}]}
    agent = resources.parse_agent(agent_body(spec))
    here = resources.parse_policy(policy_body({}, name="here"))

    selection = targeting.select_policies(agent, [here])

    assert selection.missing == ("gone",)
    assert [p.meta.name for p in selection.applied] == ["here"]


def test_policies_of_other_namespaces_never_apply() -> None:
    spec = {**MINIMAL_AGENT, "policyRefs": [{"name": "p"}]}
    agent = resources.parse_agent(agent_body(spec))
    body = policy_body({"targetSelector": {}}, name="p")
    body["metadata"]["namespace"] = "elsewhere"
    elsewhere = resources.parse_policy(body)

    assert targeting.select_policies(agent, [elsewhere]).missing == ("p",)
    assert targeting.agents_of(elsewhere, [targeting.Target.from_agent(agent)]) == ()


def test_a_policy_lists_the_agents_it_applies_to_from_raw_bodies() -> None:
    selecting = resources.parse_policy(
        policy_body({"targetSelector": {"matchLabels": {"team": "support"}}}, name="sel")
    )
    bodies = [
        agent_body(MINIMAL_AGENT, name="b-support", labels={"team": "support"}),
        agent_body({**MINIMAL_AGENT, "policyRefs": [{"name": "sel"}]}, name="a-refers"),
        agent_body(MINIMAL_AGENT, name="c-other", labels={"team": "ops"}),
        # a spec that no longer validates still names its references
        agent_body({"policyRefs": [{"name": "sel"}], "agent": "broken"}, name="d-broken"),
    ]

    targets = [targeting.Target.from_body(b) for b in bodies]

    assert targeting.agents_of(selecting, targets) == ("a-refers", "b-support", "d-broken")
