"""The CRD's API and the runtime's config cannot drift apart unnoticed.

Sections with the runtime's shape are the runtime's models; sections that name Secrets instead
of environment variables must otherwise match field for field; every RuntimeConfig field is
rendered from the AgentDeployment (a new runtime option fails here until the API exposes it).
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_support import DEFAULTS, MINIMAL_AGENT, agent_body
from pydantic import BaseModel

from pilothouse.operator import api, rendering, resources
from pilothouse.runtime import config


def _fields(model: type[BaseModel], *, drop: set[str]) -> dict[str, Any]:
    props = model.model_json_schema(by_alias=True)["properties"]
    return {
        k: {kk: vv for kk, vv in v.items() if kk != "title"}
        for k, v in props.items()
        if k not in drop
    }


def test_model_spec_is_the_runtime_model_config_with_secrets_instead_of_env_vars() -> None:
    ours = _fields(api.ModelSpec, drop={"apiKeySecretRef", "headersFrom"})
    runtime = _fields(config.ModelConfig, drop={"apiKeyEnv", "headersFromEnv"})

    assert set(ours) == set(runtime)
    for name in ours:
        for key in ("type", "default", "minimum", "maximum", "exclusiveMinimum", "anyOf"):
            assert ours[name].get(key) == runtime[name].get(key), (name, key)


def test_tool_spec_is_the_runtime_tool_config_with_secrets_instead_of_env_vars() -> None:
    ours = _fields(api.ToolSpec, drop={"headersFrom"})
    runtime = _fields(config.ToolConfig, drop={"headersFromEnv"})

    assert set(ours) == set(runtime)
    for name in ours:
        for key in ("type", "default", "enum", "minimum", "maximum", "exclusiveMinimum"):
            assert ours[name].get(key) == runtime[name].get(key), (name, key)


def test_reused_sections_are_the_runtime_models_themselves() -> None:
    fields = api.AgentDeploymentSpec.model_fields
    agent = api.AgentSpec.model_fields

    assert fields["reliability"].annotation is config.ReliabilityConfig
    assert fields["workers"].annotation is config.WorkerConfig
    assert fields["sessions"].annotation is config.SessionConfig
    assert fields["telemetry"].annotation is config.TelemetryConfig
    assert agent["fallback"].annotation is config.FallbackConfig
    assert issubclass(api.AgentPolicySpec, config.PolicySpec)


def test_every_runtime_config_field_is_rendered_from_the_agent() -> None:
    agent = resources.parse_agent(agent_body(MINIMAL_AGENT))

    rendered = rendering.render(agent, [], system_prompt="x", defaults=DEFAULTS)

    missing = set(config.RuntimeConfig.model_fields) - rendered.config.model_fields_set
    assert not missing, (
        f"RuntimeConfig fields the operator does not render: {sorted(missing)}; expose them in "
        "operator/api.py and pass them in rendering.render()"
    )


def test_the_policy_rules_drop_the_targeting_only() -> None:
    spec = api.AgentPolicySpec.model_validate(
        {
            "enforcement": "dryRun",
            "costLimit": {"maxUsdPerHour": 5},
            "targetSelector": {"matchLabels": {"team": "a"}},
        }
    )

    rules = spec.rules()

    assert type(rules) is config.PolicySpec
    assert rules.enforcement is config.Enforcement.DRY_RUN
    assert rules.cost_limit == config.CostLimitPolicy(max_usd_per_hour=5)


# ------------------------------------------------------ the models enforce the CEL rules too


def _agent_spec(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL_AGENT, **changes}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            _agent_spec(replicas=2, scaling={"maxReplicas": 3}),
            "spec.replicas cannot be set together with spec.scaling",
        ),
        (
            _agent_spec(scaling={"minReplicas": 5, "maxReplicas": 2}),
            "spec.scaling.minReplicas must be less than or equal to spec.scaling.maxReplicas",
        ),
        (
            _agent_spec(agent={"model": {"endpoint": "http://m/v1", "name": "m"}}),
            "spec.agent: set exactly one of systemPrompt and systemPromptFrom",
        ),
        (
            _agent_spec(
                reliability={"retry": {"initialBackoffSeconds": 5, "maxBackoffSeconds": 1}}
            ),
            "maxBackoffSeconds must be >= initialBackoffSeconds",
        ),
        (
            _agent_spec(resources={"limits": {"memory": "lots"}}),
            "spec.resources.limits.memory",
        ),
    ],
)
def test_specs_the_cel_rules_reject_are_rejected_by_the_models(
    spec: dict[str, Any], message: str
) -> None:
    from pilothouse.operator import errors

    with pytest.raises(errors.SpecError, match=message.replace(".", r"\.")) as raised:
        resources.parse_agent(agent_body(spec))

    assert raised.value.reason == "InvalidSpec"


def test_label_selector_requirements_need_values_exactly_for_in_and_notin() -> None:
    from pilothouse.operator import selectors

    with pytest.raises(ValueError, match="In and NotIn need values"):
        selectors.LabelSelectorRequirement(key="team", operator="In")
    with pytest.raises(ValueError, match="Exists and DoesNotExist take none"):
        selectors.LabelSelectorRequirement(key="team", operator="Exists", values=("a",))
    assert selectors.LabelSelectorRequirement(key="team", operator="Exists").values == ()
