"""A background job run every few seconds for the life of a pod, which no failure ends.

The runtime has several such jobs (audit retention and escalation expiry in
:mod:`pilothouse.runtime.audit.retention`, settling decided escalations in
:mod:`pilothouse.runtime.desk`); they share this loop so that each one logs a failing run and
tries again at the next tick, whatever the run raised, and stops cleanly on ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pilothouse.runtime import errors

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``job()`` every ``interval`` seconds in a background task until :meth:`close`."""

    def __init__(
        self,
        name: str,
        job: Callable[[], Awaitable[object]],
        *,
        interval: float,
        run_at_start: bool = True,
    ) -> None:
        self.name = name
        self.interval = interval
        self._job = job
        self._run_at_start = run_at_start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if not self._run_at_start:
            await asyncio.sleep(self.interval)
        while True:
            try:
                await self._job()
            except errors.PilothouseError as e:
                log.warning("%s failed (retrying in %.0fs): %s", self.name, self.interval, e)
            except Exception:  # a bug in one run must not end the job for the pod's life
                log.exception("%s failed (retrying in %.0fs)", self.name, self.interval)
            await asyncio.sleep(self.interval)
