"""The queue-depth autoscaler's decision: a pure function of the backlog, the spec and the past.

The operator's per-agent timer (:mod:`pilothouse.operator.reconciling`) reads the backlog of the
agent's Redis stream and the Deployment's current replicas, calls :func:`desired_replicas` with
the clock, applies the decision and keeps the returned history for the next call. Nothing here
reads a clock or does I/O, so every rule is tested with time passed in.

The rules, after the HorizontalPodAutoscaler's:

* recommendation = ``ceil(backlog / targetQueueDepthPerReplica)`` clamped to
  [minReplicas, maxReplicas];
* up at once (at most ``maxScaleUpStep`` replicas per decision when set);
* down only to the highest recommendation seen within ``scaleDownStabilizationSeconds``, so
  replicas drop only after the backlog has stayed low for the whole window;
* an unknown backlog (Redis unreachable) holds the current count;
* the bounds always win: replicas outside [min, max] (the spec just changed) move inside at once.

The first decision after a start has no history: the current count counts as a recommendation
made now, so a restarted operator waits a full window before it scales anything down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pilothouse.operator import api

__all__ = ["REASONS", "Decision", "Recommendation", "desired_replicas"]

SCALED_UP: Final = "ScaledUp"
"""Replicas rise to the recommendation."""
SCALE_UP_LIMITED: Final = "ScaleUpLimited"
"""Replicas rise by ``maxScaleUpStep``, short of the recommendation."""
SCALED_DOWN: Final = "ScaledDown"
"""Replicas fall to the highest recommendation of the stabilization window."""
STABILIZING: Final = "ScaleDownStabilizing"
"""The recommendation is lower, but not for the whole stabilization window yet: hold."""
STEADY: Final = "Steady"
"""The recommendation equals the current count."""
BACKLOG_UNKNOWN: Final = "BacklogUnavailable"
"""The backlog could not be read: hold (within the bounds)."""
REASONS: Final = (SCALED_UP, SCALE_UP_LIMITED, SCALED_DOWN, STABILIZING, STEADY, BACKLOG_UNKNOWN)
"""Every reason a :class:`Decision` can carry."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What the backlog called for at one moment."""

    at: datetime
    replicas: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now, why, and the history to pass to the next call."""

    replicas: int
    """Replicas to run."""
    current: int
    """Replicas running when the decision was made."""
    recommended: int | None
    """The backlog's recommendation within the bounds; None when the backlog is unknown."""
    reason: str
    """One of this module's reason constants."""
    message: str
    """The arithmetic, for Events and status."""
    history: tuple[Recommendation, ...]
    """Recommendations within the stabilization window, oldest first."""

    @property
    def changed(self) -> bool:
        """Whether replicas must be written."""
        return self.replicas != self.current


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def desired_replicas(
    backlog: int | None,
    spec: api.ScalingSpec,
    history: Sequence[Recommendation],
    now: datetime,
    *,
    current: int,
) -> Decision:
    """Decide the replica count from the backlog (None: unknown) at ``now``."""
    if backlog is not None and backlog < 0:
        raise ValueError(f"backlog must not be negative, got {backlog}")
    if current < 0:
        raise ValueError(f"current replicas must not be negative, got {current}")
    low, high = spec.min_replicas, spec.max_replicas
    bounds = f"bounds {low}-{high}"

    if backlog is None:
        held = _clamp(current, low, high)
        message = f"backlog unknown: holding {held} replicas ({bounds})"
        if held != current:
            message = f"backlog unknown: moving {current} -> {held} replicas into {bounds}"
        return Decision(held, current, None, BACKLOG_UNKNOWN, message, tuple(history))

    per = spec.target_queue_depth_per_replica
    recommended = _clamp(math.ceil(backlog / per), low, high)
    window_start = now - timedelta(seconds=spec.scale_down_stabilization_seconds)
    past = list(history) or [Recommendation(now, current)]
    window = (*(r for r in past if r.at > window_start), Recommendation(now, recommended))
    why = f"backlog {backlog} at {per} per replica recommends {recommended} ({bounds})"

    if recommended > current:
        step = spec.max_scale_up_step
        target = recommended if step is None else min(recommended, current + step)
        target = max(target, low)
        reason = SCALED_UP if target == recommended else SCALE_UP_LIMITED
        message = f"{why}: scaling up {current} -> {target}"
        if reason == SCALE_UP_LIMITED:
            message += f" (maxScaleUpStep {step})"
        return Decision(target, current, recommended, reason, message, window)

    if recommended < current:
        highest = max(r.replicas for r in window)
        target = _clamp(min(current, highest), low, high)
        if target < current:
            message = f"{why}: scaling down {current} -> {target}"
            if highest > recommended:
                message += f" (highest recommendation of the last {_seconds(spec)} is {highest})"
            return Decision(target, current, recommended, SCALED_DOWN, message, window)
        message = (
            f"{why}: holding {current} until the recommendation stays lower for "
            f"{_seconds(spec)} (highest in the window: {highest})"
        )
        return Decision(current, current, recommended, STABILIZING, message, window)

    return Decision(current, current, recommended, STEADY, f"{why}: steady", window)


def _seconds(spec: api.ScalingSpec) -> str:
    return f"{spec.scale_down_stabilization_seconds}s"
