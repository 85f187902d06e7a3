"""Progress of a running evaluation on stderr: a bar on a terminal, plain lines elsewhere.

The ``pilothouse eval`` command passes a :class:`Progress` to the runner as its ``on_result``
callback. On a TTY it redraws one line (``[######------] 12/30  11 passed  1 failed``); in CI
logs, where carriage returns make a mess, it prints a line at every tenth of the run, and
nothing at all for short runs.
"""

from __future__ import annotations

import sys
from typing import TextIO

from pilothouse.runtime.evaluation import results

__all__ = ["PLAIN_MIN_EXAMPLES", "Progress"]

PLAIN_MIN_EXAMPLES = 10
"""Runs shorter than this print no plain progress lines (the final table says it all)."""
_BAR_WIDTH = 30


class Progress:
    """Counts finished examples and shows how far the run is."""

    def __init__(self, total: int, *, stream: TextIO | None = None, tty: bool | None = None):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.passed = 0
        self.failed = 0
        self._next_plain = 1

    def __call__(self, result: results.ExampleResult) -> None:
        self.done += 1
        if result.passed:
            self.passed += 1
        else:
            self.failed += 1
        if self.tty:
            self._draw()
        elif self.total >= PLAIN_MIN_EXAMPLES and self.done * 10 >= self._next_plain * self.total:
            while self.done * 10 >= self._next_plain * self.total:
                self._next_plain += 1
            self.stream.write(f"eval: {self.line()}\n")
            self.stream.flush()

    def line(self) -> str:
        """``12/30 examples, 11 passed, 1 failed``."""
        return f"{self.done}/{self.total} examples, {self.passed} passed, {self.failed} failed"

    def _draw(self) -> None:
        filled = _BAR_WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (a TTY) so that what follows starts on a fresh one."""
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()
