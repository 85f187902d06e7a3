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
from typing import Final, Literal

from pilothouse.runtime import config
from pilothouse.runtime.policies import findings

__all__ = [
    "DAY_HOURS",
    "NANO_PER_USD",
    "WINDOW_MINUTES",
    "CostLimitSection",
    "Reservation",
    "Spend",
    "SpendKey",
    "minute_of",
    "reserve",
    "reserve_keys",
    "spend_at",
    "spend_key",
    "to_nano",
    "user_spend_key",
]

NANO_PER_USD: Final = 1_000_000_000
WINDOW_MINUTES: Final = 60
KEY_TTL_SECONDS: Final = (WINDOW_MINUTES + 1) * 60
DAY_HOURS: Final = 24
"""The daily window: the current hour and the 23 before (hourly buckets)."""
DAY_KEY_TTL_SECONDS: Final = (DAY_HOURS + 1) * 3600
Window = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class SpendKey:
    """A spend hash in Redis and where a call at some time lands in it."""

    key: str
    bucket: int
    window: int
    ttl: int


def spend_at(key: str, window: Window, now: float) -> SpendKey:
    """The hourly spend (``key``, minute buckets) or the daily one (``key:day``, hour buckets)
    at wall-clock ``now``."""
    if window == "hour":
        return SpendKey(key, minute_of(now), WINDOW_MINUTES, KEY_TTL_SECONDS)
    return SpendKey(f"{key}:day", int(now // 3600), DAY_HOURS, DAY_KEY_TTL_SECONDS)


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
    """One hourly spend: :func:`reserve_keys` with every limit on ``buckets``. ``limits`` are
    (limit in nano-USD, enforced) pairs."""
    spends = [Spend(buckets, minute, WINDOW_MINUTES)]
    spent, reserved = reserve_keys(
        spends, estimate_nano, [(0, lim, on) for lim, on in limits], commit=commit
    )
    return Reservation(spent[0], reserved)


@dataclass(frozen=True, slots=True)
class Spend:
    """One spend hash as the reference algorithm sees it: its buckets, the current bucket and
    how many buckets (the current one included) make its window."""

    buckets: dict[int, int]
    bucket: int
    window: int


def reserve_keys(
    spends: Sequence[Spend],
    estimate_nano: int,
    limits: Sequence[tuple[int, int, bool]],
    *,
    commit: bool,
) -> tuple[list[int], bool]:
    """The reference algorithm of ``cost_reserve.lua``; mutates the buckets like the script
    mutates the hashes. ``limits`` are (index of the spend, limit in nano-USD, enforced).
    Returns each spend before the call and whether the estimate was reserved (in all)."""
    spent = []
    for s in spends:
        oldest = s.bucket - (s.window - 1)
        for m in [m for m in s.buckets if m < oldest]:
            del s.buckets[m]
        spent.append(max(0, sum(s.buckets.values())))
    blocked = any(enforced and spent[k] + estimate_nano > limit for k, limit, enforced in limits)
    if blocked or not commit:
        return spent, False
    if estimate_nano > 0:
        for s in spends:
            s.buckets[s.bucket] = s.buckets.get(s.bucket, 0) + estimate_nano
    return spent, True


def window_spend(buckets: Mapping[int, int], minute: int) -> int:
    """Spend in nano-USD within the window ending at ``minute``."""
    oldest = minute - (WINDOW_MINUTES - 1)
    return max(0, sum(v for m, v in buckets.items() if m >= oldest))


class CostLimitSection:
    """:class:`config.CostLimitPolicy`: the verdict given the spends the script saw."""

    name = "costLimit"

    def __init__(self, spec: config.CostLimitPolicy) -> None:
        self.per = spec.per
        limits: list[tuple[Window, int, float]] = []
        if spec.max_usd_per_hour is not None:
            limits.append(("hour", to_nano(spec.max_usd_per_hour), spec.max_usd_per_hour))
        if spec.max_usd_per_day is not None:
            limits.append(("day", to_nano(spec.max_usd_per_day), spec.max_usd_per_day))
        self.limits = tuple(limits)
        """(window, limit in nano-USD, limit in USD) of each maximum the policy sets."""

    def finding(
        self,
        spent_nano: int,
        estimate_nano: int,
        *,
        user: str | None = None,
        window: Window = "hour",
    ) -> findings.Finding | None:
        """The denial when ``spent_nano`` (in ``window``) + the estimate passes that limit."""
        limit = next((lim for w, lim, _ in self.limits if w == window), None)
        if limit is None or spent_nano + estimate_nano <= limit:
            return None
        usd = next(u for w, _, u in self.limits if w == window)
        whose = f" by user {user}" if self.per == "user" else ""
        last = "in the last hour" if window == "hour" else "in the last 24 hours"
        return findings.denied(
            self.name,
            f"${spent_nano / NANO_PER_USD:.4f} spent{whose} {last} + "
            f"${estimate_nano / NANO_PER_USD:.4f} estimated for this call would exceed "
            f"the limit of ${usd:.2f}/{window}",
        )
