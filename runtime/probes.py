"""Liveness and readiness of a runtime process, behind ``/healthz`` and ``/readyz``.

Liveness says only that the process is alive and its event loop is not stuck: a heartbeat task
stamps the time every second and ``/healthz`` fails when the stamp is stale (a loop starved by a
blocking call, a heartbeat that died). Readiness says whether the pod can do its job right now:
not draining (SIGTERM turns readiness off first), and every check passes (Redis reachable,
the worker pool's loops running). Checks are cached briefly so a probe storm costs one Redis
round trip per interval. Used by :mod:`pilothouse.runtime.api` and wired by ``serving``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["HEARTBEAT_INTERVAL_SECONDS", "STALE_AFTER_SECONDS", "Check", "Health", "Readiness"]

HEARTBEAT_INTERVAL_SECONDS: Final = 1.0
STALE_AFTER_SECONDS: Final = 10.0
"""A heartbeat older than this makes ``/healthz`` fail."""
CHECK_CACHE_SECONDS: Final = 1.0
"""How long a readiness result is reused."""
CHECK_TIMEOUT_SECONDS: Final = 1.0
"""Longest one readiness check may take before it counts as failed."""

Check = Callable[[], Awaitable[str | None]]
"""A readiness check: None when fine, else why not (``"redis: connection refused"``)."""


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: Mapping[str, str]
    """Failed checks by name (``draining`` while shutting down)."""


class Health:
    """The process's heartbeat, drain flag and readiness checks."""

    def __init__(
        self,
        checks: Mapping[str, Check] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks or {})
        self._clock = clock
        self._beat = clock()
        self._lag = 0.0
        self._draining = False
        self._cached: tuple[float, Readiness] | None = None
        self._task: asyncio.Task[None] | None = None

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check
        self._cached = None

    # -------------------------------------------------------------------------- liveness

    def beat(self) -> None:
        now = self._clock()
        self._lag = max(0.0, now - self._beat - HEARTBEAT_INTERVAL_SECONDS)
        self._beat = now

    def alive(self) -> tuple[bool, float]:
        """Whether the heartbeat is fresh, and its age in seconds."""
        age = self._clock() - self._beat
        return age < STALE_AFTER_SECONDS, age

    @property
    def loop_lag(self) -> float:
        """How late the last heartbeat was (a measure of event loop congestion), seconds."""
        return self._lag

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_SECONDS)
            self.beat()

    def start(self) -> None:
        self.beat()
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # ------------------------------------------------------------------------- readiness

    @property
    def draining(self) -> bool:
        return self._draining

    def begin_drain(self) -> None:
        """From now on the pod reports not ready (the first thing SIGTERM does)."""
        self._draining = True
        self._cached = None

    async def readiness(self) -> Readiness:
        if self._draining:
            return Readiness(False, {"draining": "the process is shutting down"})
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < CHECK_CACHE_SECONDS:
            return self._cached[1]
        names = list(self._checks)
        outcomes = await asyncio.gather(
            *(self._run_check(self._checks[n]) for n in names), return_exceptions=False
        )
        reasons = {n: why for n, why in zip(names, outcomes, strict=True) if why is not None}
        result = Readiness(not reasons, reasons)
        self._cached = (now, result)
        return result

    @staticmethod
    async def _run_check(check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
        except Exception as e:
            return f"{type(e).__name__}: {e}"
