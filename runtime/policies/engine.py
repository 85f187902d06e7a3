"""The policy engine: every request, LLM call and tool call passes here before it happens.

Implements :class:`pilothouse.runtime.hooks.PolicyHook` for the agent loop. Policies are
evaluated in config order; within a policy its sections in a fixed order: ``safety``,
``compliance``, ``resourceLimits``, ``escalation`` (pure, judged from the action alone), then
``rateLimit`` and ``costLimit`` (budgets kept in Redis). The first verdict that is not ALLOWED
wins and carries the policy's name and a reason a person reads.

* ``enforcement: dryRun``: the policy's verdict is returned with ``dry_run=True`` (the action
  proceeds; the agent loop records ``dry_run_denied``), and evaluation goes on, so an enforced
  policy later in the order still decides.
* A budget check that fails (Redis down, timeout) is a DENIED verdict with the error as the
  reason, unless the policy says ``failOpen``.
* Cost: one Redis round trip per LLM call (check + reserve), plus one in :meth:`settle` when
  the real cost differs from the estimate. Rate: one round trip per request for all its rate
  limits together. Nothing else touches Redis; actions of kinds no budget applies to cost no
  round trip at all. When an enforced pure section denies, budgets of earlier policies are
  still checked (to report the first verdict in order) but nothing is reserved.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions

from pilothouse.runtime import config, errors, hooks, metrics
from pilothouse.runtime.policies import (
    approvals,
    compliance,
    costs,
    findings,
    rates,
    safety,
)
from pilothouse.runtime.policies import (
    resources as resource_limits,
)

__all__ = ["DEFAULT_REDIS_TIMEOUT", "SECTION_ORDER", "PolicyEngine"]

log = logging.getLogger(__name__)

SECTION_ORDER: Final = (
    "safety",
    "compliance",
    "resourceLimits",
    "escalation",
    "rateLimit",
    "costLimit",
)
"""The order in which a policy's sections are evaluated."""
DEFAULT_REDIS_TIMEOUT: Final = 0.5
"""Longest a budget check waits for Redis before the policy fails (closed, or open)."""
MAX_OPEN_RESERVATIONS: Final = 10_000
"""Reservations remembered for :meth:`PolicyEngine.settle` (oldest forgotten first)."""

_REDIS_ERRORS: Final = (redis.exceptions.RedisError, OSError, TimeoutError)


def _script(name: str) -> str:
    return resources.files("pilothouse.runtime.policies").joinpath("lua", name).read_text()


@dataclass(frozen=True, slots=True)
class _Policy:
    """One :class:`config.ResolvedPolicy`, compiled."""

    name: str
    dry_run: bool
    fail_open: bool
    pure: tuple[findings.Section, ...]
    rate: rates.RateLimitSection | None
    cost: costs.CostLimitSection | None

    @classmethod
    def compile(cls, spec: config.ResolvedPolicy) -> _Policy:
        pure: list[findings.Section] = []
        if spec.safety is not None:
            pure.append(safety.SafetySection(spec.safety))
        if spec.compliance is not None:
            pure.append(compliance.ComplianceSection(spec.compliance))
        if spec.resource_limits is not None:
            pure.append(resource_limits.ResourceLimitsSection(spec.resource_limits))
        if spec.escalation is not None:
            pure.append(approvals.EscalationSection(spec.escalation))
        return cls(
            name=spec.name,
            dry_run=spec.enforcement is config.Enforcement.DRY_RUN,
            fail_open=spec.fail_open,
            pure=tuple(pure),
            rate=None if spec.rate_limit is None else rates.RateLimitSection(spec.rate_limit),
            cost=None if spec.cost_limit is None else costs.CostLimitSection(spec.cost_limit),
        )

    def budget(self, kind: hooks.ActionKind) -> bool:
        if kind is hooks.ActionKind.REQUEST:
            return self.rate is not None
        return kind is hooks.ActionKind.LLM_CALL and self.cost is not None

    def applies(self, kind: hooks.ActionKind) -> bool:
        return self.budget(kind) or any(kind in s.kinds for s in self.pure)

    def pure_finding(self, action: hooks.Action) -> findings.Finding | None:
        for section in self.pure:
            if action.kind in section.kinds:
                found = section.check(action)
                if found is not None:
                    return found
        return None


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A policy's finding on an action, and whether its budget check failed."""

    finding: findings.Finding | None
    failed: bool = False


class PolicyEngine:
    """The agent's policies, compiled; implements :class:`hooks.PolicyHook`.

    ``redis_client`` is needed when a policy has a cost or rate limit; ``clock`` returns
    wall-clock seconds (compared across replicas, so it must be the real time in production;
    tests pass their own).
    """

    def __init__(
        self,
        cfg: config.RuntimeConfig,
        redis_client: aioredis.Redis | None = None,
        *,
        clock: Callable[[], float] = time.time,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
    ) -> None:
        self._policies = tuple(_Policy.compile(p) for p in cfg.policies)
        self._by_kind = {
            kind: tuple(p for p in self._policies if p.applies(kind)) for kind in hooks.ActionKind
        }
        if redis_client is None and any(p.rate or p.cost for p in self._policies):
            raise errors.ConfigError(
                "policies: a cost or rate limit needs Redis, but the policy engine got none"
            )
        self._redis = redis_client
        self._clock = clock
        self._timeout = redis_timeout
        self._prefix = cfg.redis.key_prefix
        self._namespace = cfg.namespace
        self._has_cost = any(p.cost for p in self._policies)
        used = {(p.cost.per, w) for p in self._policies if p.cost for w, _, _ in p.cost.limits}
        kinds: list[tuple[str, costs.Window]] = [
            ("agent", "hour"),
            ("agent", "day"),
            ("user", "hour"),
            ("user", "day"),
        ]
        # The agent's hourly spend is always kept, so a limit added later sees the spend so far.
        self._spend_kinds = tuple(k for k in kinds if k in used or k == ("agent", "hour"))
        self._reservations: collections.OrderedDict[
            tuple[str, str, int], tuple[tuple[costs.SpendKey, ...], int]
        ] = collections.OrderedDict()
        self._cost_script: Any = None
        self._rate_script: Any = None
        if redis_client is not None:
            self._cost_script = redis_client.register_script(_script("cost_reserve.lua"))
            self._rate_script = redis_client.register_script(_script("rate_acquire.lua"))
        self._counters = {
            (p.name, r): metrics.POLICY_DECISIONS.labels(policy=p.name, result=r)
            for p in self._policies
            for r in metrics.POLICY_RESULTS
        }
        self._escalation_timeouts = {
            p.name: p.escalation.timeout_seconds for p in cfg.policies if p.escalation is not None
        }

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The policies in evaluation order."""
        return tuple(p.name for p in self._policies)

    def escalation_timeout(self, policy: str) -> int:
        """``escalation.timeoutSeconds`` of a policy (the default when it has none)."""
        default = config.EscalationPolicy().timeout_seconds
        return self._escalation_timeouts.get(policy, default)

    # ------------------------------------------------------------------------- the hook

    async def check(self, action: hooks.Action) -> hooks.PolicyResult:
        """Judge an action; never raises (a failure is a DENIED verdict)."""
        try:
            return await self._check(action)
        except Exception as e:  # the hook must not raise: fail closed
            log.exception("policy engine failed on %s %s", action.kind, action.request_id)
            return hooks.PolicyResult(
                hooks.Verdict.DENIED, "policy-engine", f"the policy check failed: {e}"
            )

    async def settle(self, action: hooks.Action, actual_cost_usd: float) -> None:
        """Correct the spends by the difference between the real cost and the estimate
        reserved before the call (in the buckets it was reserved in). Never raises: a failure
        is logged."""
        if not self._has_cost or self._redis is None:
            return
        reserved = self._reservations.pop((action.agent_id, action.request_id, action.step), None)
        if reserved is None:
            spends, delta = self._spends(action), costs.to_nano(actual_cost_usd)
        else:
            spends, delta = reserved[0], costs.to_nano(actual_cost_usd) - reserved[1]
        if delta == 0:
            return
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=False)
                for spend in spends:
                    pipe.hincrby(spend.key, str(spend.bucket), delta)
                    pipe.expire(spend.key, spend.ttl)
                await pipe.execute()
        except _REDIS_ERRORS as e:
            log.warning(
                "cost of %s step %d not settled (%+.6f USD): %s",
                action.request_id,
                action.step,
                delta / costs.NANO_PER_USD,
                e,
            )

    # ------------------------------------------------------------------------- evaluation

    async def _check(self, action: hooks.Action) -> hooks.PolicyResult:
        policies = self._by_kind[action.kind]
        if not policies:
            return hooks.ALLOWED
        pure: list[findings.Finding | None] = []
        stop = len(policies)
        for i, p in enumerate(policies):
            found = p.pure_finding(action)
            pure.append(found)
            if found is not None and not p.dry_run:
                stop = i
                break
        budgets: dict[int, _Outcome] = {}
        indexed = [(i, policies[i]) for i in range(stop) if policies[i].budget(action.kind)]
        if indexed:
            budgets = await self._budgets(indexed, action, commit=stop == len(policies))
        return self._decide(policies, pure, budgets, stop)

    def _decide(
        self,
        policies: Sequence[_Policy],
        pure: Sequence[findings.Finding | None],
        budgets: dict[int, _Outcome],
        stop: int,
    ) -> hooks.PolicyResult:
        first_dry_run: hooks.PolicyResult | None = None
        for i in range(min(stop + 1, len(policies))):
            p = policies[i]
            outcome = budgets.get(i)
            found = pure[i] or (outcome.finding if outcome is not None else None)
            self._count(p, found, failed=outcome is not None and outcome.failed)
            if found is None:
                continue
            result = hooks.PolicyResult(
                found.verdict,
                p.name,
                f"{found.section}: {found.reason}",
                dry_run=p.dry_run,
                retry_after_seconds=found.retry_after_seconds,
            )
            if not p.dry_run:
                return result
            first_dry_run = first_dry_run or result
        return first_dry_run or hooks.ALLOWED

    def _count(self, p: _Policy, found: findings.Finding | None, *, failed: bool) -> None:
        if failed:
            result = "failed_open" if found is None else "failed_closed"
        elif found is None:
            result = "allowed"
        else:
            result = ("dry_run_" if p.dry_run else "") + (
                "denied" if found.verdict is hooks.Verdict.DENIED else "escalate"
            )
        self._counters[(p.name, result)].inc()

    async def _budgets(
        self, indexed: list[tuple[int, _Policy]], action: hooks.Action, *, commit: bool
    ) -> dict[int, _Outcome]:
        try:
            async with asyncio.timeout(self._timeout):
                if action.kind is hooks.ActionKind.REQUEST:
                    return await self._rates(indexed, action, commit=commit)
                return await self._costs(indexed, action, commit=commit)
        except _REDIS_ERRORS as e:
            what = "rate" if action.kind is hooks.ActionKind.REQUEST else "cost"
            reason = (
                f"cannot check the {what} limit, Redis is unavailable ({e or type(e).__name__})"
            )
            section = "rateLimit" if what == "rate" else "costLimit"
            return {
                i: _Outcome(None if p.fail_open else findings.denied(section, reason), failed=True)
                for i, p in indexed
            }

    async def _rates(
        self, indexed: list[tuple[int, _Policy]], action: hooks.Action, *, commit: bool
    ) -> dict[int, _Outcome]:
        keys: list[str] = []
        args: list[int | str] = [int(self._clock() * 1_000_000), int(commit)]
        scopes: list[str] = []
        for _, p in indexed:
            assert p.rate is not None
            scope = p.rate.scope(action)
            scopes.append(scope)
            keys.append(
                rates.rate_key(self._prefix, self._namespace, action.agent_id, p.name, scope)
            )
            args += [p.rate.interval_us, p.rate.tolerance_us, int(not p.dry_run)]
        waits = await self._rate_script(keys=keys, args=args)
        out: dict[int, _Outcome] = {}
        for (i, p), scope, wait in zip(indexed, scopes, waits, strict=True):
            assert p.rate is not None
            out[i] = _Outcome(p.rate.finding(scope, int(wait)))
        return out

    async def _costs(
        self, indexed: list[tuple[int, _Policy]], action: hooks.Action, *, commit: bool
    ) -> dict[int, _Outcome]:
        estimate = costs.to_nano(action.estimated_cost_usd)
        spends = self._spends(action)
        where = {(scope, window): i for i, (scope, window) in enumerate(self._spend_kinds)}
        args: list[int | str] = [estimate, int(commit), len(spends)]
        for spend in spends:
            args += [spend.bucket, spend.window, spend.ttl]
        for _, p in indexed:
            assert p.cost is not None
            for window, limit, _usd in p.cost.limits:
                args += [where[(p.cost.per, window)] + 1, limit, int(not p.dry_run)]
        *spent, reserved = await self._cost_script(keys=[s.key for s in spends], args=args)
        if reserved:
            self._remember(action, spends, estimate)
        user = action.user or rates.ANONYMOUS
        out: dict[int, _Outcome] = {}
        for i, p in indexed:
            assert p.cost is not None
            found = None
            for window, _limit, _usd in p.cost.limits:
                seen = int(spent[where[(p.cost.per, window)]])
                found = found or p.cost.finding(seen, estimate, user=user, window=window)
            out[i] = _Outcome(found)
        return out

    def _spends(self, action: hooks.Action) -> tuple[costs.SpendKey, ...]:
        """The spends a call is checked against and reserved in, in :attr:`_spend_kinds`
        order: the agent's hour (and day), and the end user's when a limit is per user."""
        now = self._clock()
        agent = costs.spend_key(self._prefix, self._namespace, action.agent_id)
        user = action.user or rates.ANONYMOUS
        keys = {
            "agent": agent,
            "user": costs.user_spend_key(self._prefix, self._namespace, action.agent_id, user),
        }
        return tuple(
            costs.spend_at(keys[scope], window, now) for scope, window in self._spend_kinds
        )

    def _remember(
        self, action: hooks.Action, spends: tuple[costs.SpendKey, ...], estimate: int
    ) -> None:
        self._reservations[(action.agent_id, action.request_id, action.step)] = (spends, estimate)
        while len(self._reservations) > MAX_OPEN_RESERVATIONS:
            self._reservations.popitem(last=False)
