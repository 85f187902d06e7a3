"""The RateLimit policy section: requests per minute with a burst, per agent, user or tenant.

GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp): each request
advances a *theoretical arrival time* (TAT) by the emission interval ``60 s / requestsPerMinute``;
a request is allowed when the TAT is at most ``burst`` intervals ahead of now. So a quiet
limiter lets ``burst + 1`` requests through at once and then one per interval, and no minute
ever sees more than ``requestsPerMinute + burst``. One key per (policy, scope) holds the TAT in
Redis; ``lua/rate_acquire.lua`` checks and takes every limit of a request atomically (all or
nothing). Requests without a user (or tenant) share one ``_anonymous`` budget when the limit
is per user (or tenant). :func:`gcra` is the same algorithm in pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pilothouse.runtime import config, hooks
from pilothouse.runtime.policies import findings

__all__ = ["ANONYMOUS", "Gcra", "RateLimitSection", "gcra", "rate_key"]

ANONYMOUS: Final = "_anonymous"
US_PER_MINUTE: Final = 60_000_000


@dataclass(frozen=True, slots=True)
class Gcra:
    """One GCRA step: allowed or not, the TAT to store if taken, the wait if refused."""

    allowed: bool
    new_tat_us: int
    wait_us: int


def gcra(tat_us: int | None, now_us: int, interval_us: int, tolerance_us: int) -> Gcra:
    """The reference algorithm of ``rate_acquire.lua`` for one limit."""
    tat = now_us if tat_us is None else max(tat_us, now_us)
    if tat - now_us <= tolerance_us:
        return Gcra(True, tat + interval_us, 0)
    return Gcra(False, tat + interval_us, tat - now_us - tolerance_us)


def rate_key(prefix: str, namespace: str, agent: str, policy: str, scope: str) -> str:
    """The TAT key of one policy's limit for one scope (``agent``, ``user:ID``, ``tenant:ID``)."""
    return f"{prefix}:{{{namespace}/{agent}}}:rate:{policy}:{scope}"


class RateLimitSection:
    """:class:`config.RateLimitPolicy` in integer microseconds."""

    name = "rateLimit"

    def __init__(self, spec: config.RateLimitPolicy) -> None:
        self.spec = spec
        self.interval_us = math.ceil(US_PER_MINUTE / spec.requests_per_minute)
        self.tolerance_us = spec.burst * self.interval_us

    def scope(self, action: hooks.Action) -> str:
        """Whose budget the action draws from."""
        if self.spec.per == "user":
            return f"user:{action.user or ANONYMOUS}"
        if self.spec.per == "tenant":
            return f"tenant:{action.tenant or ANONYMOUS}"
        return "agent"

    def finding(self, scope: str, wait_us: int) -> findings.Finding | None:
        if wait_us <= 0:
            return None
        who = "the agent" if scope == "agent" else scope.replace(":", " ", 1)
        return findings.denied(
            self.name,
            f"more than {self.spec.requests_per_minute} requests/minute "
            f"(burst {self.spec.burst}) for {who}; retry in {wait_us / 1e6:.1f}s",
            retry_after_seconds=wait_us / 1e6,
        )
