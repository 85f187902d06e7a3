"""Fault decisions: seeded, proportional, restricted to models, validated (pure)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pilothouse.runtime.mockllm import errors, faults


def outcomes(
    config: faults.FaultConfig, n: int, *, seed: int = 7, model: str = "m"
) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(faults.decide(config, model, rng).outcome for _ in range(n))


def test_no_faults_by_default_and_no_randomness_used() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert faults.decide(faults.FaultConfig(), "m", rng) == faults.NO_FAULT
    assert rng.getstate() == state


def test_same_seed_gives_the_same_sequence() -> None:
    config = faults.FaultConfig(error_rate=0.3, hang_rate=0.1, latency_ms=5, latency_jitter_ms=10)
    a, b = random.Random(42), random.Random(42)
    assert [faults.decide(config, "m", a) for _ in range(200)] == [
        faults.decide(config, "m", b) for _ in range(200)
    ]


@pytest.mark.parametrize(
    ("field", "outcome"),
    [
        ("error_rate", "error"),
        ("rate_limit_rate", "rate_limit"),
        ("hang_rate", "hang"),
        ("malformed_rate", "malformed"),
    ],
)
def test_a_rate_of_one_always_gives_that_fault(field: str, outcome: str) -> None:
    config = faults.FaultConfig.parse({field: 1.0})
    assert outcomes(config, 500) == Counter({outcome: 500})


def test_rates_are_honoured_in_proportion() -> None:
    config = faults.FaultConfig(error_rate=0.2, rate_limit_rate=0.1, malformed_rate=0.1)
    counts = outcomes(config, 10_000)
    assert counts["error"] == pytest.approx(2000, rel=0.1)
    assert counts["rate_limit"] == pytest.approx(1000, rel=0.15)
    assert counts["malformed"] == pytest.approx(1000, rel=0.15)
    assert counts["ok"] == pytest.approx(6000, rel=0.05)
    assert counts["hang"] == 0


def test_error_and_rate_limit_carry_status_and_retry_after() -> None:
    rng = random.Random(0)
    error = faults.decide(faults.FaultConfig(error_rate=1, error_status=503), "m", rng)
    assert (error.outcome, error.status) == ("error", 503)
    limited = faults.decide(faults.FaultConfig(rate_limit_rate=1, retry_after=7), "m", rng)
    assert (limited.outcome, limited.status, limited.retry_after) == ("rate_limit", 429, 7)


def test_malformed_variants_index_the_malformed_bodies() -> None:
    rng = random.Random(3)
    config = faults.FaultConfig(malformed_rate=1)
    variants = {faults.decide(config, "m", rng).malformed_variant for _ in range(200)}
    assert variants == set(range(len(faults.MALFORMED_BODIES)))


def test_latency_with_jitter_stays_in_range() -> None:
    rng = random.Random(5)
    config = faults.FaultConfig(latency_ms=50, latency_jitter_ms=20)
    delays = [faults.decide(config, "m", rng).delay_s for _ in range(500)]
    assert all(0.050 <= d <= 0.070 for d in delays)
    assert max(delays) - min(delays) > 0.015
    fixed = faults.decide(faults.FaultConfig(latency_ms=50), "m", rng)
    assert fixed.outcome == "ok"
    assert fixed.delay_s == pytest.approx(0.05)


def test_faults_restricted_to_models_leave_others_untouched() -> None:
    config = faults.FaultConfig(error_rate=1, latency_ms=100, models=("primary",))
    rng = random.Random(9)
    assert faults.decide(config, "primary", rng).outcome == "error"
    state = rng.getstate()
    assert faults.decide(config, "fallback", rng) == faults.NO_FAULT
    assert rng.getstate() == state


def test_rates_may_not_add_up_to_more_than_one() -> None:
    with pytest.raises(errors.FaultConfigError, match="at most 1"):
        faults.FaultConfig.parse({"error_rate": 0.6, "hang_rate": 0.6})


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_status": 404}, "error_status"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"retry_after": "soon"}, "retry_after"),
        ({"eror_rate": 0.1}, "eror_rate"),
    ],
)
def test_invalid_settings_name_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(errors.FaultConfigError, match=field):
        faults.FaultConfig.parse(settings)


def test_patched_changes_only_the_given_settings() -> None:
    config = faults.FaultConfig(error_rate=0.5, error_status=502)
    patched = config.patched({"latency_ms": 10})
    assert (patched.error_rate, patched.error_status, patched.latency_ms) == (0.5, 502, 10)
    with pytest.raises(errors.FaultConfigError):
        config.patched({"hang_rate": 0.9})
