"""Deadline-bound polling for end-to-end tests: wait for a state, never sleep and hope.

Used by the e2e tests (``from polling import wait_until``); e2e/ is on sys.path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
DEFAULT_INTERVAL = 0.25


def wait_until(
    probe: Callable[[], T],
    condition: Callable[[T], bool],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
) -> T:
    """Call probe() until condition(result) holds; return that result.

    Fails the test after ``timeout`` seconds, showing the last result, so a failure says
    what the cluster looked like instead of only that it took too long.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if condition(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {result!r}"
            )
        time.sleep(interval)
