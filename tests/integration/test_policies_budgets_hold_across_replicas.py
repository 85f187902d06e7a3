"""Cost and rate limits kept in real Redis: allow, deny, settle, dryRun, fail closed/open, and
two engines with their own Redis clients (like two replicas) never together exceed a limit."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import config, devservers, hooks
from pilothouse.runtime.policies import costs, engine

pytestmark = pytest.mark.integration

MODEL = {"endpoint": "http://127.0.0.1:1/v1", "name": "m"}
Kind = hooks.ActionKind


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _cfg(agent: str, *policies: dict[str, Any]) -> config.RuntimeConfig:
    return config.parse_config(
        {
            "agent": agent,
            "model": MODEL,
            "redis": {"keyPrefix": f"ph-{agent}"},
            "policies": list(policies),
        }
    )


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    yield made
    for c in made:
        await c.aclose()


def _llm(agent: str, request: str, step: int = 0, cost: float = 0.01) -> hooks.Action:
    return hooks.Action(Kind.LLM_CALL, agent, request, step, estimated_cost_usd=cost)


def _request(agent: str, request: str, **kw: Any) -> hooks.Action:
    return hooks.Action(Kind.REQUEST, agent, request, 0, **kw)


async def test_cost_limit_denies_past_the_limit_and_settles_real_cost(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    clock = Clock()
    e = engine.PolicyEngine(
        _cfg(unique_name, {"name": "budget", "costLimit": {"maxUsdPerHour": 0.05}}),
        clients[0],
        clock=clock,
    )
    for i in range(5):
        assert (await e.check(_llm(unique_name, f"r{i}"))).allowed
    denied = await e.check(_llm(unique_name, "r5"))
    assert denied.verdict is hooks.Verdict.DENIED
    assert denied.policy == "budget"
    assert "costLimit" in denied.reason
    # The calls really cost half their estimate: settling frees room for more.
    for i in range(5):
        await e.settle(_llm(unique_name, f"r{i}"), 0.005)
    assert (await e.check(_llm(unique_name, "r6"))).allowed
    # An hour later the spend has left the window.
    clock.now += 3600
    for i in range(5):
        assert (await e.check(_llm(unique_name, f"s{i}"))).allowed


async def test_two_replicas_hammering_stay_within_the_cost_limit(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(unique_name, {"name": "budget", "costLimit": {"maxUsdPerHour": 1.0}})
    clock = Clock()
    replicas = [engine.PolicyEngine(cfg, c, clock=clock) for c in clients]

    async def hammer(e: engine.PolicyEngine, who: int) -> int:
        allowed = 0
        for i in range(150):
            action = _llm(unique_name, f"r{who}-{i}", cost=0.01)
            if (await e.check(action)).allowed:
                allowed += 1
                await e.settle(action, 0.01)
        return allowed

    counts = await asyncio.gather(*(hammer(e, n) for n, e in enumerate(replicas) for _ in range(3)))
    assert sum(counts) == 100  # $1.00 / $0.01, exactly: check and reserve are one atomic step
    assert all(c > 0 for c in counts)


async def test_two_replicas_hammering_stay_within_the_rate_limit(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(unique_name, {"name": "rate", "rateLimit": {"requestsPerMinute": 60, "burst": 9}})
    clock = Clock()
    replicas = [engine.PolicyEngine(cfg, c, clock=clock) for c in clients]

    async def hammer(e: engine.PolicyEngine, who: int) -> int:
        results = [await e.check(_request(unique_name, f"{who}-{i}")) for i in range(40)]
        return sum(r.allowed for r in results)

    counts = await asyncio.gather(*(hammer(e, n) for n, e in enumerate(replicas)))
    assert sum(counts) == 10  # burst + 1 at one instant
    clock.now += 3.0  # one request per second at 60/minute
    more = await asyncio.gather(*(hammer(e, n + 10) for n, e in enumerate(replicas)))
    assert sum(more) == 3


async def test_rate_limit_per_user_keeps_users_apart(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(unique_name, {"name": "rate", "rateLimit": {"requestsPerMinute": 1, "per": "user"}})
    e = engine.PolicyEngine(cfg, clients[0], clock=Clock())
    assert (await e.check(_request(unique_name, "a1", user="alice"))).allowed
    refused = await e.check(_request(unique_name, "a2", user="alice"))
    assert refused.verdict is hooks.Verdict.DENIED
    assert "user alice" in refused.reason
    assert (await e.check(_request(unique_name, "b1", user="bob"))).allowed


async def test_a_request_refused_by_one_limit_uses_no_other_budget(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(
        unique_name,
        {"name": "wide", "rateLimit": {"requestsPerMinute": 1, "burst": 1}},
        {"name": "per-user", "rateLimit": {"requestsPerMinute": 1, "per": "user"}},
    )
    e = engine.PolicyEngine(cfg, clients[0], clock=Clock())
    assert (await e.check(_request(unique_name, "1", user="alice"))).allowed
    refused = await e.check(_request(unique_name, "2", user="alice"))
    assert refused.policy == "per-user"
    # alice's refusal did not use up the agent-wide burst: bob still gets the second slot.
    assert (await e.check(_request(unique_name, "3", user="bob"))).allowed


async def test_dry_run_budget_lets_through_and_says_so(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(
        unique_name,
        {"name": "trial", "enforcement": "dryRun", "rateLimit": {"requestsPerMinute": 1}},
    )
    e = engine.PolicyEngine(cfg, clients[0], clock=Clock())
    assert (await e.check(_request(unique_name, "1"))).verdict is hooks.Verdict.ALLOWED
    second = await e.check(_request(unique_name, "2"))
    assert second.allowed
    assert second.dry_run
    assert second.verdict is hooks.Verdict.DENIED
    assert second.policy == "trial"


async def test_redis_down_fails_closed_unless_fail_open(unique_name: str) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=devservers.free_port(), socket_connect_timeout=0.2)
    try:
        closed = engine.PolicyEngine(
            _cfg(unique_name, {"name": "budget", "costLimit": {"maxUsdPerHour": 5}}), dead
        )
        result = await closed.check(_llm(unique_name, "r"))
        assert result.verdict is hooks.Verdict.DENIED
        assert "Redis is unavailable" in result.reason
        opened = engine.PolicyEngine(
            _cfg(
                unique_name, {"name": "budget", "failOpen": True, "costLimit": {"maxUsdPerHour": 5}}
            ),
            dead,
        )
        assert (await opened.check(_llm(unique_name, "r"))).verdict is hooks.Verdict.ALLOWED
    finally:
        await dead.aclose()


async def test_a_pure_denial_later_in_order_reserves_nothing(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(
        unique_name,
        {"name": "budget", "costLimit": {"maxUsdPerHour": 0.02}},
        {"name": "limits", "resourceLimits": {"maxSteps": 1}},
    )
    e = engine.PolicyEngine(cfg, clients[0], clock=Clock())
    for i in range(5):
        refused = await e.check(
            hooks.Action(
                Kind.LLM_CALL, unique_name, f"x{i}", 0, estimated_cost_usd=0.01, steps_so_far=1
            )
        )
        assert refused.policy == "limits"
    # Nothing was reserved by the refused calls: the whole budget is still there.
    assert (await e.check(_llm(unique_name, "a"))).allowed
    assert (await e.check(_llm(unique_name, "b"))).allowed
    assert not (await e.check(_llm(unique_name, "c"))).allowed


async def test_a_per_user_cost_limit_keeps_each_users_spend_and_the_agents(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(
        unique_name,
        {"name": "agent-budget", "costLimit": {"maxUsdPerHour": 0.05}},
        {"name": "user-budget", "costLimit": {"maxUsdPerHour": 0.02, "per": "user"}},
    )
    clock = Clock()
    replicas = [engine.PolicyEngine(cfg, c, clock=clock) for c in clients]

    def llm(request: str, user: str | None) -> hooks.Action:
        return hooks.Action(
            Kind.LLM_CALL, unique_name, request, 0, estimated_cost_usd=0.01, user=user
        )

    # Two replicas, one user: the user's $0.02 holds across them.
    answers = await asyncio.gather(*(r.check(llm(f"a{i}", "alice")) for i, r in
                                     enumerate(replicas * 3)))  # fmt: skip
    assert sum(a.allowed for a in answers) == 2
    refused = next(a for a in answers if not a.allowed)
    assert refused.policy == "user-budget"
    assert "spent by user alice" in refused.reason
    # Bob has his own budget; the agent's $0.05 is everyone's.
    assert (await replicas[0].check(llm("b1", "bob"))).allowed
    assert (await replicas[1].check(llm("b2", "bob"))).allowed
    assert (await replicas[0].check(llm("c1", "carol"))).allowed
    agent_refusal = await replicas[1].check(llm("c2", "carol"))
    assert agent_refusal.policy == "agent-budget"
    # Settling a call that cost nothing (on the replica that reserved it) frees room in both.
    first = next(i for i, a in enumerate(answers) if a.allowed)
    await (replicas * 3)[first].settle(llm(f"a{first}", "alice"), 0.0)
    assert (await replicas[0].check(llm("a9", "alice"))).allowed


async def test_the_cost_script_matches_the_pure_reference(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    lua = resources.files("pilothouse.runtime.policies").joinpath("lua", "cost_reserve.lua")
    script = clients[0].register_script(lua.read_text())
    rng = random.Random(7)
    keys = [f"{unique_name}:{{t}}:{name}" for name in ("agent", "agent:day", "user")]
    windows = [costs.WINDOW_MINUTES, costs.DAY_HOURS, costs.WINDOW_MINUTES]
    pure: list[dict[int, int]] = [{}, {}, {}]
    now = 1_800_000_000.0
    for _ in range(300):
        now += rng.choice([0, 0, 5, 60, 420, 3660, 30_000])
        buckets = [costs.minute_of(now), int(now // 3600), costs.minute_of(now)]
        estimate = rng.choice([0, 3, 10, 40])
        limits = [(k, rng.choice([50, 100, 400]), rng.random() < 0.8) for k in (0, 1, 2)]
        commit = rng.random() < 0.9
        args: list[int] = [estimate, int(commit), len(keys)]
        for bucket, window in zip(buckets, windows, strict=True):
            args += [bucket, window, 90_000]
        for k, limit, enforced in limits:
            args += [k + 1, limit, int(enforced)]
        *spent, reserved = await script(keys=keys, args=args)
        spends = [
            costs.Spend(b, bucket, window)
            for b, bucket, window in zip(pure, buckets, windows, strict=True)
        ]
        expected = costs.reserve_keys(spends, estimate, limits, commit=commit)
        assert ([int(s) for s in spent], bool(reserved)) == expected


async def test_daily_and_hourly_limits_hold_together(
    clients: list[aioredis.Redis], unique_name: str
) -> None:
    cfg = _cfg(
        unique_name,
        {"name": "budget", "costLimit": {"maxUsdPerHour": 0.03, "maxUsdPerDay": 0.05}},
    )
    clock = Clock()
    e = engine.PolicyEngine(cfg, clients[0], clock=clock)
    outcomes = []
    for hour in range(4):  # three calls allowed per hour, but five per day
        for i in range(4):
            outcomes.append((await e.check(_llm(unique_name, f"h{hour}-{i}"))).allowed)
        clock.now += 3600
    assert outcomes == [True] * 3 + [False] + [True, True, False, False] + [False] * 8
    refused = await e.check(_llm(unique_name, "later"))
    assert "in the last 24 hours" in refused.reason
    clock.now += 24 * 3600  # a day later both windows are clear
    assert (await e.check(_llm(unique_name, "next-day"))).allowed
