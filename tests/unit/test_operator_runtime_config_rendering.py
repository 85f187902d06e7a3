"""An AgentDeployment and its policies render into the runtime's config, secrets as env names."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from operator_support import (
    DEFAULTS,
    MINIMAL_AGENT,
    agent_body,
    example_policies,
    policy_body,
    support_agent,
    targeting_order,
)

from pilothouse.operator import errors, rendering, resources, settings
from pilothouse.runtime import config


def _render(
    spec: dict[str, Any],
    policies: list[resources.Policy] | None = None,
    defaults: settings.RuntimeDefaults = DEFAULTS,
) -> rendering.RenderedConfig:
    agent = resources.parse_agent(agent_body(spec))
    return rendering.render(agent, policies or [], system_prompt="You help.", defaults=defaults)


def test_the_example_agent_renders_a_config_the_runtime_loads() -> None:
    agent = support_agent()
    policies = targeting_order(agent, example_policies())

    rendered = rendering.render(agent, policies, system_prompt="Be kind.", defaults=DEFAULTS)
    loaded = config.parse_config(yaml.safe_load(rendered.document))

    assert loaded == rendered.config
    assert loaded.agent == "customer-support"
    assert loaded.namespace == "shop"
    assert loaded.system_prompt == "Be kind."
    assert [t.name for t in loaded.tools] == ["weather_api", "initiate_return"]
    assert [p.name for p in loaded.policies] == ["cost-guard", "safety", "returns-review"]
    assert loaded.policies[2].enforcement is config.Enforcement.DRY_RUN
    assert rendered.applied_policies == (("cost-guard", 1), ("safety", 1), ("returns-review", 1))


def test_secrets_become_environment_variable_names_and_never_values() -> None:
    rendered = rendering.render(support_agent(), [], system_prompt="p", defaults=DEFAULTS)
    env = {e.name: (e.secret.name, e.secret.key) for e in rendered.secret_env}

    assert env == {
        "PILOTHOUSE_MODEL_0_API_KEY": ("llm-credentials", "openai-api-key"),
        "PILOTHOUSE_MODEL_1_API_KEY": ("llm-credentials", "openai-api-key"),
        "PILOTHOUSE_TOOL_1_HEADER_0": ("returns-api", "token"),
        "PILOTHOUSE_REDIS_URL": ("pilothouse-redis", "url"),
        "PILOTHOUSE_POSTGRES_DSN": ("pilothouse-postgres", "dsn"),
    }
    cfg = rendered.config
    assert cfg.model.api_key_env == "PILOTHOUSE_MODEL_0_API_KEY"
    assert cfg.fallback_models[0].api_key_env == "PILOTHOUSE_MODEL_1_API_KEY"
    assert cfg.tools[1].headers_from_env == {"Authorization": "PILOTHOUSE_TOOL_1_HEADER_0"}
    assert cfg.redis.url is None
    assert cfg.audit.dsn is None
    for secret_name in (
        "llm-credentials",
        "returns-api",
        "pilothouse-redis",
        "pilothouse-postgres",
    ):
        assert secret_name not in rendered.document


def test_operator_defaults_fill_in_what_the_agent_leaves_out() -> None:
    spec = {k: v for k, v in MINIMAL_AGENT.items() if k not in ("redis", "audit")}
    defaults = settings.RuntimeDefaults(
        redis_secret={"name": "shared-redis", "key": "url"},
        postgres_secret={"name": "shared-pg", "key": "dsn"},
        otlp_endpoint="http://otel:4318",
    )

    rendered = _render(spec, defaults=defaults)

    env = {e.name: e.secret.name for e in rendered.secret_env}
    assert env == {"PILOTHOUSE_REDIS_URL": "shared-redis", "PILOTHOUSE_POSTGRES_DSN": "shared-pg"}
    assert rendered.config.telemetry.otlp_endpoint == "http://otel:4318"


def test_the_agents_own_settings_win_over_the_defaults() -> None:
    spec = {**MINIMAL_AGENT, "telemetry": {"otlpEndpoint": "http://mine:4318"}}
    defaults = settings.RuntimeDefaults(
        redis_secret={"name": "shared-redis", "key": "url"}, otlp_endpoint="http://otel:4318"
    )

    rendered = _render(spec, defaults=defaults)

    assert {e.name: e.secret.name for e in rendered.secret_env} == {"PILOTHOUSE_REDIS_URL": "redis"}
    assert rendered.config.telemetry.otlp_endpoint == "http://mine:4318"


def test_development_urls_are_written_only_without_secrets() -> None:
    spec = {k: v for k, v in MINIMAL_AGENT.items() if k not in ("redis", "audit")}
    defaults = settings.RuntimeDefaults(
        redis_url="redis://127.0.0.1:6379/0", postgres_dsn="postgresql://localhost/ph"
    )

    rendered = _render(spec, defaults=defaults)

    assert rendered.secret_env == ()
    assert rendered.config.redis.url == "redis://127.0.0.1:6379/0"
    assert rendered.config.audit.dsn == "postgresql://localhost/ph"


def test_an_agent_without_redis_is_refused_naming_the_field() -> None:
    spec = {k: v for k, v in MINIMAL_AGENT.items() if k != "redis"}

    with pytest.raises(errors.SpecError, match=r"^spec\.redis\.urlSecretRef: no Redis") as e:
        _render(spec)

    assert e.value.reason == "InvalidSpec"


def test_an_agent_with_audit_on_and_no_postgres_is_refused_naming_the_field() -> None:
    spec = {**MINIMAL_AGENT, "audit": {"enabled": True}}

    with pytest.raises(errors.SpecError, match=r"^spec\.audit\.postgresSecretRef: no PostgreSQL"):
        _render(spec)


def test_a_tool_schema_the_runtime_refuses_is_reported_at_its_field() -> None:
    tool = {"name": "t", "url": "http://t/", "parameters": {"type": "nonsense"}}
    spec = {**MINIMAL_AGENT, "agent": {**MINIMAL_AGENT["agent"], "tools": [tool]}}

    with pytest.raises(
        errors.SpecError, match=r"spec\.agent\.tools\[0\]\.parameters: .*JSON Schema"
    ):
        _render(spec)


def test_a_policy_with_a_bad_regex_is_refused_when_parsed() -> None:
    body = policy_body({"safety": {"denyPatterns": ["(unclosed"]}}, name="bad-regex")

    with pytest.raises(
        errors.SpecError, match=r"spec\.safety\.denyPatterns\.0: .*regular expression"
    ):
        resources.parse_policy(body)


def test_the_hash_follows_the_config_and_nothing_else() -> None:
    policy_v1 = resources.parse_policy(policy_body({"costLimit": {"maxUsdPerHour": 5}}, name="c"))
    policy_v2 = resources.parse_policy(
        policy_body({"costLimit": {"maxUsdPerHour": 6}}, name="c", generation=2)
    )

    first = _render(MINIMAL_AGENT, [policy_v1])
    again = _render(MINIMAL_AGENT, [policy_v1])
    changed_policy = _render(MINIMAL_AGENT, [policy_v2])
    changed_agent = _render({**MINIMAL_AGENT, "workers": {"concurrency": 5}}, [policy_v1])

    assert first.hash == again.hash
    assert len({first.hash, changed_policy.hash, changed_agent.hash}) == 3


def test_auth_tokens_become_a_file_path() -> None:
    spec = {**MINIMAL_AGENT, "server": {"authTokensSecretRef": {"name": "api-tokens", "key": "t"}}}

    rendered = _render(spec)

    assert rendered.config.server.auth_tokens_file == rendering.AUTH_TOKENS_PATH
    assert rendered.auth_tokens is not None
    assert rendered.auth_tokens.name == "api-tokens"
    assert rendered.config.server.port == rendering.SERVER_PORT


def test_provider_access_and_tool_choice_reach_the_runtime_with_secrets_as_env_names() -> None:
    spec = {
        **MINIMAL_AGENT,
        "agent": {
            "systemPrompt": "You help.",
            "toolChoice": "required",
            "tools": [{"name": "lookup", "url": "http://tools/lookup"}],
            "model": {
                "endpoint": "https://res.openai.azure.com/openai/deployments/gpt",
                "name": "gpt-4o-mini",
                "apiKeySecretRef": {"name": "azure", "key": "key"},
                "apiKeyHeader": "api-key",
                "apiVersion": "2024-10-21",
                "headers": {"x-route": "blue"},
                "headersFrom": [
                    {"name": "x-gateway-token", "secretKeyRef": {"name": "gw", "key": "token"}}
                ],
                "caBundleFile": "/etc/ssl/gw.pem",
                "contextWindowTokens": 8192,
                "toolChoice": "lookup",
            },
        },
    }

    rendered = _render(spec)
    model = rendered.config.model
    env = {e.name: (e.secret.name, e.secret.key) for e in rendered.secret_env}

    assert rendered.config.tool_choice == "required"
    assert (model.tool_choice, model.api_key_header, model.api_version) == (
        "lookup",
        "api-key",
        "2024-10-21",
    )
    assert model.headers == {"x-route": "blue"}
    assert model.headers_from_env == {"x-gateway-token": "PILOTHOUSE_MODEL_0_HEADER_0"}
    assert env["PILOTHOUSE_MODEL_0_HEADER_0"] == ("gw", "token")
    assert (model.ca_bundle_file, model.context_window_tokens) == ("/etc/ssl/gw.pem", 8192)
    assert "gw" not in rendered.document.replace("gw.pem", "")


def test_a_tool_choice_naming_no_tool_is_reported_at_its_field() -> None:
    spec = {**MINIMAL_AGENT, "agent": {**MINIMAL_AGENT["agent"], "toolChoice": "lookup"}}

    with pytest.raises(errors.SpecError, match="toolChoice: 'lookup'"):
        _render(spec)
