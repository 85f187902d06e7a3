"""The CostLimit policy section: spend over a rolling hour, of an agent or each end user.

Before an LLM call the engine *reserves* the call's estimated cost: if the spend of the last
hour plus the estimate would exceed ``maxUsdPerHour`` the call is denied, else the estimate is
added to the spend, in one atomic Lua script (``lua/cost_reserve.lua``). After the call the
agent loop reports the real cost and the engine adds the difference (:meth:`settle`). Because
the check and the reservation are one atomic step, N replicas together can overshoot a limit
only by what their in-flight calls cost above their estimates.

The spend is a Redis hash per agent (shared by every policy with a cost limit, since it is the
agent's money), and one per end user of the agent when a limit says ``per: user`` (keyed on the
authenticated caller, or the end user a delegating caller names), of one-minute buckets in
integer nano-USD; the window is the current minute and the 59 before it, so spend leaves the
window up to a minute late (the limit errs on the safe side). A call reserves its estimate in
every spend it is checked against, all or nothing. :func:`reserve_keys` is the same algorithm
in pure Python, the reference for the script.
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
    "reserve_keys",
    "spend_key",
    "to_nano",
    "user_spend_key",
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


def user_spend_key(prefix: str, namespace: str, agent: str, user: str) -> str:
    """One end user's spend hash (same hash tag as the agent's: one script sees both)."""
    return f"{spend_key(prefix, namespace, agent)}:user:{user}"


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
    """One spend: :func:`reserve_keys` with every limit on ``buckets``. ``limits`` are (limit
    in nano-USD, enforced) pairs."""
    spents, reserved = reserve_keys(
        [buckets], minute, estimate_nano, [(0, lim, on) for lim, on in limits], commit=commit
    )
    return Reservation(spents[0], reserved)


def reserve_keys(
    spends: Sequence[dict[int, int]],
    minute: int,
    estimate_nano: int,
    limits: Sequence[tuple[int, int, bool]],
    *,
    commit: bool,
) -> tuple[list[int], bool]:
    """The reference algorithm of ``cost_reserve.lua``; mutates the ``spends`` like the script
    mutates the hashes. ``limits`` are (index of the spend, limit in nano-USD, enforced).
    Returns each spend before the call and whether the estimate was reserved (in all)."""
    oldest = minute - (WINDOW_MINUTES - 1)
    spent = []
    for buckets in spends:
        for m in [m for m in buckets if m < oldest]:
            del buckets[m]
        spent.append(max(0, sum(buckets.values())))
    blocked = any(enforced and spent[k] + estimate_nano > limit for k, limit, enforced in limits)
    if blocked or not commit:
        return spent, False
    if estimate_nano > 0:
        for buckets in spends:
            buckets[minute] = buckets.get(minute, 0) + estimate_nano
    return spent, True


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
        self.per = spec.per

    def finding(
        self, spent_nano: int, estimate_nano: int, *, user: str | None = None
    ) -> findings.Finding | None:
        if spent_nano + estimate_nano <= self.limit_nano:
            return None
        whose = f" by user {user}" if self.per == "user" else ""
        return findings.denied(
            self.name,
            f"${spent_nano / NANO_PER_USD:.4f} spent{whose} in the last hour + "
            f"${estimate_nano / NANO_PER_USD:.4f} estimated for this call would exceed "
            f"the limit of ${self.max_usd_per_hour:.2f}/hour",
        )
