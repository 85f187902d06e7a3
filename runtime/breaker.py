"""The circuit breaker per (agent, model endpoint), shared by every replica through Redis.

Why: when a model endpoint is down, calling it anyway costs each request a timeout and piles
load on a struggling provider. After ``failureThreshold`` failures within ``windowSeconds`` the
breaker opens and requests go straight to the next model (or the rule-based fallback); after
``recoveryTimeoutSeconds`` it lets ``halfOpenMaxProbes`` probes through; a successful probe
closes it, a failed one opens it again.

Two layers:

* :func:`transition` is the state machine, a pure function
  ``(state, event, now_ms, settings) -> (new state, decision)`` with the clock passed in.
* :class:`CircuitBreakers` runs the *same* machine atomically in Redis (``breaker.lua`` via
  EVALSHA, one round trip per check or record) so that when one replica trips a breaker every
  replica stops calling. When Redis is unreachable it runs :func:`transition` over a local dict
  (per-process state), sets ``pilothouse_circuit_breaker_degraded`` to 1, logs once, and never
  blocks a request on Redis; it tries Redis again every ``reconnect_interval`` seconds and goes
  back to the shared state as soon as Redis answers.

A success in the closed state changes nothing (failures are counted in a sliding window, not
as a streak), so the happy path costs one round trip: the check before the call. Only probes
report their success. Times are wall-clock milliseconds because they are compared across
processes. Called by :mod:`pilothouse.runtime.fallback` around every LLM attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import resources
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions

from pilothouse.runtime import config, metrics, retries

__all__ = [
    "BreakerDecision",
    "BreakerEvent",
    "BreakerSettings",
    "BreakerState",
    "CircuitBreakers",
    "State",
    "transition",
]

log = logging.getLogger(__name__)

KEY_TTL_MS: Final = 7 * 24 * 3600 * 1000
"""Idle breaker keys expire after this (garbage collection of agents that went away)."""
DEFAULT_REDIS_TIMEOUT: Final = 0.25
"""Longest a breaker waits for Redis before deciding locally."""
DEFAULT_RECONNECT_INTERVAL: Final = 1.0
"""While degraded, how often a check tries Redis again."""


class State(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class BreakerEvent(StrEnum):
    ACQUIRE = "acquire"
    """May a call go out? (checked before every attempt)"""
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """:class:`config.CircuitBreakerConfig` in integer milliseconds."""

    failure_threshold: int
    window_ms: int
    recovery_ms: int
    half_open_max_probes: int

    @classmethod
    def from_config(cls, cfg: config.CircuitBreakerConfig) -> BreakerSettings:
        return cls(
            failure_threshold=cfg.failure_threshold,
            window_ms=round(cfg.window_seconds * 1000),
            recovery_ms=round(cfg.recovery_timeout_seconds * 1000),
            half_open_max_probes=cfg.half_open_max_probes,
        )


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One breaker's state. Times are wall-clock milliseconds."""

    state: State = State.CLOSED
    failures: tuple[int, ...] = ()
    """Times of the failures counted in the current window (fewer than the threshold)."""
    opened_at: int = 0
    probes: int = 0
    """Probes let through in the current half-open period."""
    probe_since: int = 0
    """Start of the current half-open period; after a recovery timeout without an outcome,
    lost probes (a replica died mid-call) are given up and new ones let through."""


CLOSED: Final = BreakerState()


@dataclass(frozen=True, slots=True)
class BreakerDecision:
    """What one event did."""

    state: State
    previous: State
    allowed: bool = True
    """For ACQUIRE: whether the call may go out."""
    probe: bool = False
    """The call is a half-open probe: its success must be recorded."""
    retry_in_ms: int = 0
    """When not allowed: time until a probe may go out."""
    failures: int = 0

    @property
    def changed(self) -> bool:
        return self.state is not self.previous


def _opened(now_ms: int) -> BreakerState:
    return BreakerState(state=State.OPEN, opened_at=now_ms)


def transition(
    current: BreakerState, event: BreakerEvent, now_ms: int, settings: BreakerSettings
) -> tuple[BreakerState, BreakerDecision]:
    """Apply one event. ``breaker.lua`` is this function, line for line, in Redis."""
    s = current
    allowed, probe, retry_in = True, False, 0
    if event is BreakerEvent.ACQUIRE:
        if s.state is State.OPEN:
            if now_ms >= s.opened_at + settings.recovery_ms:
                s = replace(s, state=State.HALF_OPEN, probes=1, probe_since=now_ms)
                probe = True
            else:
                allowed, retry_in = False, s.opened_at + settings.recovery_ms - now_ms
        elif s.state is State.HALF_OPEN:
            if s.probes < settings.half_open_max_probes:
                s = replace(s, probes=s.probes + 1)
                probe = True
            elif now_ms >= s.probe_since + settings.recovery_ms:
                s = replace(s, probes=1, probe_since=now_ms)
                probe = True
            else:
                allowed, retry_in = False, s.probe_since + settings.recovery_ms - now_ms
    elif event is BreakerEvent.FAILURE:
        if s.state is State.CLOSED:
            kept = (*(t for t in s.failures if now_ms - t < settings.window_ms), now_ms)
            s = (
                _opened(now_ms)
                if len(kept) >= settings.failure_threshold
                else replace(s, failures=kept)
            )
        elif s.state is State.HALF_OPEN:
            s = _opened(now_ms)
    elif event is BreakerEvent.SUCCESS and s.state is State.HALF_OPEN:
        s = CLOSED
    decision = BreakerDecision(
        state=s.state,
        previous=current.state,
        allowed=allowed,
        probe=probe,
        retry_in_ms=retry_in,
        failures=len(s.failures),
    )
    return s, decision


# ----------------------------------------------------------------------------- the adapter


_LUA: Final = resources.files("pilothouse.runtime").joinpath("breaker.lua").read_text("utf-8")

# Redis being down, slow, restarting, or a replica after failover: decide locally.
_REDIS_DOWN: Final = (redis.exceptions.RedisError, OSError, TimeoutError)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CircuitBreakers:
    """The breakers of one agent, one per model endpoint key, in Redis (or locally)."""

    def __init__(
        self,
        redis_client: aioredis.Redis | None,
        settings: config.CircuitBreakerConfig,
        *,
        key_prefix: str,
        namespace: str,
        agent: str,
        clock: retries.Clock = time,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
    ) -> None:
        self._redis = redis_client
        self._script = redis_client.register_script(_LUA) if redis_client is not None else None
        self.settings = BreakerSettings.from_config(settings)
        self._args_tail = (
            self.settings.failure_threshold,
            self.settings.window_ms,
            self.settings.recovery_ms,
            self.settings.half_open_max_probes,
            max(KEY_TTL_MS, 2 * (self.settings.window_ms + self.settings.recovery_ms)),
        )
        self._prefix = f"{key_prefix}:breaker:{namespace}/{agent}:"
        self.agent = agent
        self._clock = clock
        self._redis_timeout = redis_timeout
        self._reconnect_interval = reconnect_interval
        self._local: dict[str, BreakerState] = {}
        self._degraded = redis_client is None
        self._next_redis_try = 0.0
        self._gauges: dict[str, Any] = {}

    @property
    def degraded(self) -> bool:
        """Whether decisions are currently per-process (Redis unreachable or not configured)."""
        return self._degraded

    def key(self, model_key: str) -> str:
        """The Redis key of one model endpoint's breaker."""
        return self._prefix + model_key

    async def acquire(self, model_key: str) -> BreakerDecision:
        """Ask before a call. Not allowed means: do not call, the breaker is open."""
        return await self._apply(model_key, BreakerEvent.ACQUIRE)

    async def record(self, model_key: str, *, success: bool, probe: bool) -> BreakerDecision | None:
        """Report a call's outcome. A non-probe success changes nothing and costs nothing."""
        if success and not probe:
            return None
        return await self._apply(
            model_key, BreakerEvent.SUCCESS if success else BreakerEvent.FAILURE
        )

    async def state(self, model_key: str) -> BreakerState:
        """The current state (read-only; for status pages and tests)."""
        if self._redis is not None and not self._degraded:
            try:
                async with asyncio.timeout(self._redis_timeout):
                    raw = await self._redis.hmget(self.key(model_key), ["s", "f", "o", "p", "t"])
                return _parse_hash(raw)
            except _REDIS_DOWN:
                pass
        return self._local.get(model_key, CLOSED)

    async def _apply(self, model_key: str, event: BreakerEvent) -> BreakerDecision:
        now_ms = int(self._clock.time() * 1000)
        decision: BreakerDecision | None = None
        if self._script is not None and (
            not self._degraded or self._clock.monotonic() >= self._next_redis_try
        ):
            decision = await self._apply_shared(model_key, event, now_ms)
        if decision is None:
            current = self._local.get(model_key, CLOSED)
            new, decision = transition(current, event, now_ms, self.settings)
            if new == CLOSED:
                self._local.pop(model_key, None)
            else:
                self._local[model_key] = new
        self._observe(model_key, decision)
        return decision

    async def _apply_shared(
        self, model_key: str, event: BreakerEvent, now_ms: int
    ) -> BreakerDecision | None:
        assert self._script is not None
        try:
            async with asyncio.timeout(self._redis_timeout):
                raw = await self._script(
                    keys=[self.key(model_key)], args=[event.value, now_ms, *self._args_tail]
                )
        except _REDIS_DOWN as e:
            self._next_redis_try = self._clock.monotonic() + self._reconnect_interval
            if not self._degraded:
                self._degraded = True
                metrics.BREAKER_DEGRADED.set(1)
                log.warning(
                    "circuit breakers of agent %s: Redis unreachable (%s: %s); "
                    "deciding per process until it is back",
                    self.agent,
                    type(e).__name__,
                    e,
                )
            return None
        if self._degraded:
            self._degraded = False
            self._local.clear()
            metrics.BREAKER_DEGRADED.set(0)
            log.warning(
                "circuit breakers of agent %s: Redis is back, state shared again", self.agent
            )
        return BreakerDecision(
            state=State(_text(raw[0])),
            allowed=bool(int(raw[1])),
            probe=bool(int(raw[2])),
            previous=State(_text(raw[3])),
            retry_in_ms=int(raw[4]),
            failures=int(raw[5]),
        )

    def _observe(self, model_key: str, decision: BreakerDecision) -> None:
        gauge = self._gauges.get(model_key)
        if gauge is None:
            gauge = self._gauges[model_key] = metrics.BREAKER_STATE.labels(self.agent, model_key)
        gauge.set(metrics.BREAKER_STATE_VALUES[decision.state.value])
        if decision.changed:
            level = logging.WARNING if decision.state is State.OPEN else logging.INFO
            log.log(
                level,
                "circuit breaker of agent %s for %s: %s -> %s",
                self.agent,
                model_key,
                decision.previous.value,
                decision.state.value,
            )


def _parse_hash(raw: list[Any]) -> BreakerState:
    if raw[0] is None:
        return CLOSED
    failures = tuple(int(t) for t in _text(raw[1] or "").split())
    return BreakerState(
        state=State(_text(raw[0])),
        failures=failures,
        opened_at=int(raw[2] or 0),
        probes=int(raw[3] or 0),
        probe_since=int(raw[4] or 0),
    )
