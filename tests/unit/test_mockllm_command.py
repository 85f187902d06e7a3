"""The ``mock-llm`` command line, the counters and the package surface (pure)."""

from __future__ import annotations

import argparse

import pytest

import pilothouse.runtime.mockllm as mockllm
from pilothouse.runtime.mockllm import command, faults, stats


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.configure_parser(parser)
    return parser.parse_args(argv)


def test_defaults_serve_the_built_in_scenario_on_loopback() -> None:
    args = parse()
    assert (args.host, args.port, args.scenario, args.seed) == ("127.0.0.1", 8090, None, None)
    assert command.fault_settings(args) == {}


def test_fault_flags_round_trip_through_the_parser() -> None:
    config = faults.FaultConfig(
        latency_ms=50,
        latency_jitter_ms=5,
        error_rate=0.25,
        error_status=503,
        rate_limit_rate=0.25,
        retry_after=3,
        hang_rate=0.1,
        malformed_rate=0.1,
        models=("primary", "other"),
    )
    args = parse(*command.fault_flags(config))
    assert faults.FaultConfig.parse(command.fault_settings(args)) == config


def test_fault_models_accept_commas_and_repetition() -> None:
    args = parse("--fault-models", "a,b", "--fault-models", "c", "--error-rate", "1")
    assert command.fault_settings(args) == {"error_rate": 1.0, "models": ["a", "b", "c"]}


def test_default_fault_config_needs_no_flags() -> None:
    assert command.fault_flags(faults.FaultConfig()) == []


def test_stats_count_and_reset_but_keep_requests_in_flight() -> None:
    s = stats.Stats()
    s.received("/v1/chat/completions")
    s.received("/v1/models")
    s.model("m")
    s.outcome("error")
    s.status(503)
    s.rule("echo")
    s.delay(0.25)
    s.in_flight = 2
    snapshot = s.snapshot()
    assert snapshot == {
        "total": 2,
        "in_flight": 2,
        "by_path": {"/v1/chat/completions": 1, "/v1/models": 1},
        "by_model": {"m": 1},
        "by_outcome": {"error": 1},
        "by_status": {"503": 1},
        "by_rule": {"echo": 1},
        "delayed": 1,
        "delayed_ms": 250.0,
        "by_tool_choice": {},
    }
    s.reset()
    assert s.snapshot()["total"] == 0
    assert (s.snapshot()["delayed"], s.snapshot()["delayed_ms"]) == (0, 0.0)
    assert s.snapshot()["in_flight"] == 2


@pytest.mark.parametrize("name", mockllm.__all__)
def test_every_exported_name_exists_and_is_public(name: str) -> None:
    assert not name.startswith("_")
    assert getattr(mockllm, name) is not None


def test_the_package_exports_what_users_need() -> None:
    public = {n for n in vars(mockllm) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(mockllm.__all__)
    assert {"MockLLMProcess", "FaultConfig", "load_file"} <= set(mockllm.__all__)
