"""The reference algorithms of the Redis scripts: rolling-hour cost reservation and GCRA."""

from __future__ import annotations

from pilothouse.runtime import config
from pilothouse.runtime.policies import costs, rates

USD = costs.NANO_PER_USD


def test_reservation_stops_at_the_limit_and_counts_the_estimate() -> None:
    buckets: dict[int, int] = {}
    limits = [(1 * USD, True)]
    allowed = 0
    for _ in range(20):
        if costs.reserve(buckets, 1000, USD // 10, limits, commit=True).reserved:
            allowed += 1
    assert allowed == 10
    assert costs.window_spend(buckets, 1000) == USD


def test_spend_leaves_the_window_after_an_hour() -> None:
    buckets = {1000: USD}
    limits = [(USD, True)]
    assert not costs.reserve(buckets, 1059, 1, limits, commit=True).reserved
    r = costs.reserve(buckets, 1060, 1, limits, commit=True)
    assert r.reserved
    assert r.spent_nano == 0
    assert 1000 not in buckets


def test_dry_run_limits_do_not_block_the_reservation() -> None:
    buckets = {1000: USD}
    r = costs.reserve(buckets, 1000, USD, [(USD, False)], commit=True)
    assert r.reserved
    assert buckets[1000] == 2 * USD


def test_check_only_never_reserves() -> None:
    buckets: dict[int, int] = {}
    assert not costs.reserve(buckets, 5, USD, [(10 * USD, True)], commit=False).reserved
    assert buckets == {}


def test_estimates_round_up() -> None:
    assert costs.to_nano(1e-12) == 1
    assert costs.to_nano(0.0) == 0
    assert costs.to_nano(0.25) == USD // 4


def test_cost_finding_names_the_numbers() -> None:
    section = costs.CostLimitSection(config.CostLimitPolicy(max_usd_per_hour=1.0))
    assert section.finding(USD // 2, USD // 2) is None
    found = section.finding(USD // 2, USD)
    assert found is not None
    assert "$0.5000 spent" in found.reason
    assert "$1.00/hour" in found.reason


def test_gcra_allows_burst_plus_one_then_one_per_interval() -> None:
    section = rates.RateLimitSection(config.RateLimitPolicy(requests_per_minute=60, burst=2))
    tat: int | None = None
    now = 10_000_000_000
    allowed = 0
    for _ in range(10):
        step = rates.gcra(tat, now, section.interval_us, section.tolerance_us)
        if step.allowed:
            tat = step.new_tat_us
            allowed += 1
    assert allowed == 3
    refused = rates.gcra(tat, now, section.interval_us, section.tolerance_us)
    assert not refused.allowed
    assert refused.wait_us == section.interval_us
    later = rates.gcra(tat, now + section.interval_us, section.interval_us, section.tolerance_us)
    assert later.allowed


def test_rate_scope_follows_per() -> None:
    from pilothouse.runtime import hooks

    action = hooks.Action(hooks.ActionKind.REQUEST, "a", "r", 0, user="u1", tenant="t1")
    anonymous = hooks.Action(hooks.ActionKind.REQUEST, "a", "r", 0)
    per_user = rates.RateLimitSection(config.RateLimitPolicy(requests_per_minute=1, per="user"))
    per_tenant = rates.RateLimitSection(config.RateLimitPolicy(requests_per_minute=1, per="tenant"))
    per_agent = rates.RateLimitSection(config.RateLimitPolicy(requests_per_minute=1))
    assert per_user.scope(action) == "user:u1"
    assert per_user.scope(anonymous) == "user:_anonymous"
    assert per_tenant.scope(action) == "tenant:t1"
    assert per_agent.scope(action) == "agent"


def test_a_per_user_cost_limit_reserves_in_the_agents_and_the_users_spend() -> None:
    agent: dict[int, int] = {}
    alice: dict[int, int] = {}

    def hourly(*buckets: dict[int, int]) -> list[costs.Spend]:
        return [costs.Spend(b, 1000, costs.WINDOW_MINUTES) for b in buckets]

    # Agent limit 100, alice's limit 30 (key 1): three calls of 10 fit, the fourth does not.
    limits = [(0, 100, True), (1, 30, True)]
    for _ in range(3):
        spent, ok = costs.reserve_keys(hourly(agent, alice), 10, limits, commit=True)
        assert ok
    spent, ok = costs.reserve_keys(hourly(agent, alice), 10, limits, commit=True)
    assert (spent, ok) == ([30, 30], False)
    assert (agent, alice) == ({1000: 30}, {1000: 30})  # all or nothing: nothing reserved
    # Another user's spend is their own; the agent's is shared.
    bob: dict[int, int] = {}
    spent, ok = costs.reserve_keys(hourly(agent, bob), 10, limits, commit=True)
    assert (spent, ok) == ([30, 0], True)
    assert agent == {1000: 40}
    # A dry-run user limit lets the call through (and still counts it).
    dry = [(0, 100, True), (1, 30, False)]
    spent, ok = costs.reserve_keys(hourly(agent, alice), 10, dry, commit=True)
    assert (spent, ok) == ([40, 30], True)
    assert alice == {1000: 40}


def test_a_daily_limit_counts_24_hourly_buckets() -> None:
    day: dict[int, int] = {}
    limits = [(0, 50, True)]
    for hour in range(100, 105):  # 10 an hour for five hours
        assert costs.reserve_keys([costs.Spend(day, hour, costs.DAY_HOURS)], 10, limits,
                                  commit=True)[1]  # fmt: skip
    assert not costs.reserve_keys([costs.Spend(day, 110, costs.DAY_HOURS)], 10, limits,
                                  commit=True)[1]  # fmt: skip
    # 24 hours after the first call, its hour has left the window.
    spent, ok = costs.reserve_keys([costs.Spend(day, 124, costs.DAY_HOURS)], 10, limits,
                                   commit=True)  # fmt: skip
    assert (spent, ok) == ([40], True)
    assert costs.spend_at("k", "day", 3600 * 124 + 5) == costs.SpendKey(
        "k:day", 124, costs.DAY_HOURS, costs.DAY_KEY_TTL_SECONDS
    )


def test_a_daily_finding_names_the_day() -> None:
    spec = config.CostLimitPolicy(max_usd_per_day=2.0, per="user")
    found = costs.CostLimitSection(spec).finding(2 * USD, 1, user="alice", window="day")
    assert found is not None
    assert "spent by user alice in the last 24 hours" in found.reason
    assert "$2.00/day" in found.reason
    assert costs.CostLimitSection(spec).finding(10 * USD, 1, window="hour") is None
