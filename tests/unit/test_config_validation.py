"""RuntimeConfig: what the operator writes and `pilothouse serve` reads must validate loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.runtime import config, errors

MINIMAL = {
    "agent": "support",
    "model": {"endpoint": "http://127.0.0.1:9/v1", "name": "gpt-4o-mini"},
}


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = config.parse_config(MINIMAL)
    assert cfg.max_steps == 8
    assert cfg.reliability.retry.attempts == 3
    assert cfg.reliability.circuit_breaker.failure_threshold == 5
    assert cfg.workers.concurrency == 20
    assert cfg.models == (cfg.model,)


def test_camel_case_and_snake_case_keys_are_both_accepted() -> None:
    camel = config.parse_config({**MINIMAL, "maxSteps": 3, "systemPrompt": "Be brief."})
    snake = config.parse_config({**MINIMAL, "max_steps": 3, "system_prompt": "Be brief."})
    assert camel == snake
    assert camel.max_steps == 3


def test_document_round_trips_with_camel_case_keys() -> None:
    cfg = config.parse_config(
        {
            **MINIMAL,
            "policies": [{"name": "cost-guard", "costLimit": {"maxUsdPerHour": 5}}],
            "tools": [{"name": "weather_api", "url": "http://127.0.0.1:9/weather"}],
        }
    )
    document = cfg.to_document()
    assert document["policies"][0]["costLimit"] == {"maxUsdPerHour": 5.0}
    assert config.parse_config(document) == cfg


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"maxSteps": 0}, "maxSteps"),
        ({"agent": "Not_A_DNS_Name"}, "agent"),
        ({"model": {"endpoint": "ftp://x", "name": "m"}}, "model.endpoint"),
        ({"model": {"endpoint": "https://u:key@llm.example/v1", "name": "m"}}, "credentials"),
        ({"tools": [{"name": "t", "url": "http://token@tools.example/x"}]}, "tools.0.url"),
        ({"unknownKey": 1}, "unknownKey"),
        ({"reliability": {"retry": {"attempts": 0}}}, "reliability.retry.attempts"),
        (
            {"reliability": {"retry": {"initialBackoffSeconds": 5, "maxBackoffSeconds": 1}}},
            "reliability.retry",
        ),
        ({"tools": [{"name": "bad name", "url": "http://x"}]}, "tools.0.name"),
        (
            {"tools": [{"name": "t", "url": "http://x", "parameters": {"type": "nonsense"}}]},
            "tools.0.parameters",
        ),
        ({"policies": [{"name": "p", "safety": {"denyPatterns": ["(unclosed"]}}]}, "denyPatterns"),
        ({"policies": [{"name": "p"}, {"name": "p"}]}, "duplicate names p"),
    ],
)
def test_invalid_config_names_the_field(patch: dict[str, object], where: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.parse_config({**MINIMAL, **patch}, source="runtime.yaml")
    message = str(info.value)
    assert message.startswith("runtime.yaml: invalid runtime config")
    assert where in message


def test_load_config_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read"):
        config.load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: [unclosed\n")
    with pytest.raises(errors.ConfigError, match="not valid YAML"):
        config.load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(errors.ConfigError, match="must be a mapping"):
        config.load_config(scalar)


def test_secrets_come_from_the_environment_not_the_file() -> None:
    cfg = config.parse_config(MINIMAL)
    assert cfg.redis.resolve_url({"PILOTHOUSE_REDIS_URL": "redis://r:6379/0"}) == (
        "redis://r:6379/0"
    )
    with pytest.raises(errors.ConfigError, match="PILOTHOUSE_REDIS_URL"):
        cfg.redis.resolve_url({})
    with pytest.raises(errors.ConfigError, match="PILOTHOUSE_POSTGRES_DSN"):
        cfg.audit.resolve_dsn({})


def test_pricing_computes_cost_per_token() -> None:
    pricing = config.ModelPricing(input_per_million_tokens=0.15, output_per_million_tokens=0.60)
    assert pricing.cost(1_000_000, 0) == pytest.approx(0.15)
    assert pricing.cost(1000, 500) == pytest.approx(0.00015 + 0.0003)


TOOL = {"name": "weather_api", "url": "http://tools.local/weather"}


@pytest.mark.parametrize("choice", ["auto", "required", "none", "weather_api"])
def test_tool_choice_is_a_keyword_or_a_configured_tool(choice: str) -> None:
    cfg = config.parse_config({**MINIMAL, "tools": [TOOL], "toolChoice": choice})

    assert cfg.tool_choice == choice


def test_a_tool_choice_naming_no_configured_tool_is_refused_with_the_field() -> None:
    model = {**MINIMAL["model"], "toolChoice": "weather"}
    with pytest.raises(errors.ConfigError, match=r"models\[0\]\.toolChoice: 'weather'"):
        config.parse_config({**MINIMAL, "tools": [TOOL], "model": model})
    with pytest.raises(errors.ConfigError, match=r"toolChoice: 'lookup'.*weather_api"):
        config.parse_config({**MINIMAL, "tools": [TOOL], "toolChoice": "lookup"})


def test_provider_auth_settings_are_checked() -> None:
    model = {
        **MINIMAL["model"],
        "apiKeyHeader": "api-key",
        "apiVersion": "2024-10-21",
        "headersFromEnv": {"x-gateway-token": "GATEWAY_TOKEN"},
        "caBundleFile": "/etc/ssl/gateway-ca.pem",
    }
    cfg = config.parse_config({**MINIMAL, "model": model})
    assert cfg.model.api_key_header == "api-key"

    with pytest.raises(errors.ConfigError, match="apiKeyHeader"):
        config.parse_config({**MINIMAL, "model": {**model, "apiKeyHeader": "bad header"}})
