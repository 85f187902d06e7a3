"""The CostLimit policy section: an agent's spend over a rolling hour, kept in Redis.

Before an LLM call the engine *reserves* the call's estimated cost: if the spend of the last
hour plus the estimate would exceed ``maxUsdPerHour`` the call is denied, else the estimate is
added to the spend, in one atomic Lua script (``lua/cost_reserve.lua``). After the call the
agent loop reports the real cost and the engine adds the difference (:meth:`settle`). Because
the check and the reservation are one atomic step, N replicas together can overshoot a limit
only by what their in-flight calls cost above their estimates.

The spend is a Redis hash per agent (shared by every policy with a cost limit, since it is the
agent's money) of one-minute buckets in integer nano-USD; the window is the current minute and
the 59 before it, so spend leaves the window up to a minute late (the limit errs on the safe
side). :func:`reserve` is the same algorithm in pure Python, the reference for the script.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pilothouse.runtime import config
from pilothouse.runtime.policies import findings

__all__ = [
    "NANO_PER_USD",
    "WINDOW_MINUTES",
    "CostLimitSection",
    "Reservation",
    "minute_of",
    "reserve",
    "spend_key",
    "to_nano",
]

NANO_PER_USD: Final = 1_000_000_000
WINDOW_MINUTES: Final = 60
KEY_TTL_SECONDS: Final = (WINDOW_MINUTES + 1) * 60


def to_nano(usd: float) -> int:
    """USD as integer nano-USD, rounded up (estimates err on the safe side)."""
    return max(0, math.ceil(usd * NANO_PER_USD - 1e-6))


def minute_of(now: float) -> int:
    """The unix minute a wall-clock time falls in (the bucket its spend goes to)."""
    return int(now // 60)


def spend_key(prefix: str, namespace: str, agent: str) -> str:
    """The agent's spend hash (hash-tagged per agent, for Redis Cluster)."""
    return f"{prefix}:{{{namespace}/{agent}}}:spend"


@dataclass(frozen=True, slots=True)
class Reservation:
    """What :func:`reserve` found: the spend before the call and whether it was reserved."""

    spent_nano: int
    reserved: bool


def reserve(
    buckets: dict[int, int],
    minute: int,
    estimate_nano: int,
    limits: Sequence[tuple[int, bool]],
    *,
    commit: bool,
) -> Reservation:
    """The reference algorithm of ``cost_reserve.lua``; mutates ``buckets`` like the script
    mutates the hash. ``limits`` are (limit in nano-USD, enforced) pairs."""
    oldest = minute - (WINDOW_MINUTES - 1)
    for m in [m for m in buckets if m < oldest]:
        del buckets[m]
    spent = max(0, sum(buckets.values()))
    blocked = any(enforced and spent + estimate_nano > limit for limit, enforced in limits)
    if blocked or not commit:
        return Reservation(spent, False)
    if estimate_nano > 0:
        buckets[minute] = buckets.get(minute, 0) + estimate_nano
    return Reservation(spent, True)


def window_spend(buckets: Mapping[int, int], minute: int) -> int:
    """Spend in nano-USD within the window ending at ``minute``."""
    oldest = minute - (WINDOW_MINUTES - 1)
    return max(0, sum(v for m, v in buckets.items() if m >= oldest))


class CostLimitSection:
    """:class:`config.CostLimitPolicy`: the verdict given the spend the script saw."""

    name = "costLimit"

    def __init__(self, spec: config.CostLimitPolicy) -> None:
        self.max_usd_per_hour = spec.max_usd_per_hour
        self.limit_nano = to_nano(spec.max_usd_per_hour)

    def finding(self, spent_nano: int, estimate_nano: int) -> findings.Finding | None:
        if spent_nano + estimate_nano <= self.limit_nano:
            return None
        return findings.denied(
            self.name,
            f"${spent_nano / NANO_PER_USD:.4f} spent in the last hour + "
            f"${estimate_nano / NANO_PER_USD:.4f} estimated for this call would exceed "
            f"the limit of ${self.max_usd_per_hour:.2f}/hour",
        )
