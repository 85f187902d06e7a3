"""Deadline-bound waiting for the demo, and the one error that stops it.

The demo waits for many things (the agent Ready, the operator's scale-up, the audit records in
PostgreSQL). Every wait here has a deadline and, when it passes, a :class:`DemoError` that says
what was awaited and what was last seen, so ``make demo`` fails with a reason instead of hanging
or sleeping and hoping. Used by every step in :mod:`demo.run`, :mod:`demo.stack` and
:mod:`demo.scenes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DemoError", "wait_for"]

T = TypeVar("T")


class DemoError(Exception):
    """A step of the demo did not work; the message says what and, where known, why."""


def wait_for(
    probe: Callable[[], T],
    condition: Callable[[T], bool],
    *,
    what: str,
    timeout: float,
    interval: float = 0.2,
    hold: float = 0.0,
    describe: Callable[[T], str] = repr,
    on_change: Callable[[T], None] | None = None,
) -> T:
    """Call ``probe()`` until ``condition(result)`` holds and return that result.

    With ``hold``, the condition must keep holding for that many seconds (a state that can
    flicker right after it is first reached). ``on_change`` sees every result that differs from
    the previous one (progress lines). Raises :class:`DemoError` after ``timeout`` seconds, with
    the last result described.
    """
    deadline = time.monotonic() + timeout
    previous: object = object()
    held_since: float | None = None
    while True:
        result = probe()
        if on_change is not None and result != previous:
            on_change(result)
            previous = result
        if not condition(result):
            held_since = None
        elif held_since is None:
            held_since = time.monotonic()
        if held_since is not None and time.monotonic() - held_since >= hold:
            return result
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not seen within {timeout:g} s; last seen: {describe(result)}")
        time.sleep(interval)
