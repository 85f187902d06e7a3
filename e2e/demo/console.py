"""What a person watching ``make demo`` reads: numbered steps, progress lines, aligned tables.

Every step of :mod:`demo.run` talks to the reader through one :class:`Console`, so the output
has one shape: a header per step (``[3/7] ...``), a line per thing done (``✓`` with how long
it took), indented blocks for command output (kubectl, ``pilothouse history``), and aligned
tables (:func:`table`). Colour only on a terminal, and never with ``NO_COLOR`` set; everything
else (logs of the processes the demo starts) goes to files, named once at the start.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Console", "table"]

_BOLD, _DIM, _GREEN, _RED, _YELLOW, _RESET = (
    "\033[1m",
    "\033[2m",
    "\033[32m",
    "\033[31m",
    "\033[33m",
    "\033[0m",
)
INDENT = "      "
"""Lines under a step header start here (the width of ``[1/7] ``)."""
LABEL_WIDTH = 30
"""``✓ label`` column: details of short labels line up after it."""


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()
) -> str:
    """Columns padded to their widest cell; column indexes in ``right`` are right-aligned."""
    cells = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


class Console:
    """Writes the demo's story to a stream (stdout), flushing every line."""

    def __init__(self, stream: TextIO | None = None, *, steps: int, color: bool | None = None):
        self.stream = stream or sys.stdout
        self.steps = steps
        if color is None:
            color = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        self.width = max(80, min(shutil.get_terminal_size((100, 24)).columns, 120))
        self.current = 0
        self.started = time.monotonic()
        self._steps: list[tuple[str, float]] = []  # short name, start

    # ---------------------------------------------------------------------------- styling

    def _style(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text

    def bold(self, text: str) -> str:
        return self._style(text, _BOLD)

    def dim(self, text: str) -> str:
        return self._style(text, _DIM)

    def _write(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _wrapped(self, text: str, indent: str) -> str:
        """``text`` filled to the console's width, continuation lines indented further."""
        return textwrap.fill(
            text,
            width=self.width,
            initial_indent=indent,
            subsequent_indent=indent + "  ",
            break_on_hyphens=False,
            break_long_words=False,
        )

    # ----------------------------------------------------------------------------- lines

    def title(self, text: str, note: str = "") -> None:
        """The banner at the very start."""
        self._write(self.bold(text))
        if note:
            self._write(self.dim(note))

    def step(self, title: str, *, short: str) -> None:
        """Start the next numbered step (``short`` names it in :meth:`timings`)."""
        self._steps.append((short, time.monotonic()))
        self.current += 1
        self._write()
        self._write(self.bold(f"[{self.current}/{self.steps}] {title}"))

    def done(self, what: str, detail: str = "", seconds: float | None = None) -> None:
        """A thing that worked: ``✓ what   detail (1.2 s)``, details aligned across lines."""
        took = f" ({seconds:.1f}\u00a0s)" if seconds is not None else ""  # kept on one line
        head = f"{INDENT[:-2]}{self._style('✓', _GREEN)} "
        pad = len(INDENT)
        if not detail:
            self._write(head + self.bold(what) + self.dim(took.replace("\u00a0", " ")))
            return
        fits = len(what) < LABEL_WIDTH
        label = what.ljust(LABEL_WIDTH) if fits else what + "  "
        lines = textwrap.wrap(
            label + detail + took,
            width=self.width - pad,
            subsequent_indent=" " * (LABEL_WIDTH if fits else 2),
            break_on_hyphens=False,
            break_long_words=False,
        )
        lines = [line.replace("\u00a0", " ") for line in lines]
        shown = took.replace("\u00a0", " ")
        if shown and lines[-1].endswith(shown):  # the timing dimmed, wherever it wrapped to
            lines[-1] = lines[-1][: -len(shown)] + self.dim(shown)
        lines[0] = self.bold(what) + lines[0][len(what) :]
        self._write(head + lines[0])
        for line in lines[1:]:
            self._write(" " * pad + line)

    def info(self, text: str) -> None:
        """A progress or explanation line under the current step (wrapped)."""
        self._write(self._wrapped(text, INDENT))

    def note(self, text: str) -> None:
        """A dimmed aside (why something is done the way it is)."""
        for line in self._wrapped(text, INDENT).splitlines():
            self._write(self.dim(line))

    def block(self, text: str, *, extra_indent: str = "  ") -> None:
        """Multi-line output (a table, a command's output), indented under the step."""
        for line in text.rstrip("\n").splitlines():
            self._write(f"{INDENT}{extra_indent}{line}".rstrip())

    def heading(self, text: str) -> None:
        """A sub-heading inside a step."""
        self._write()
        self._write(f"{INDENT}{self.bold(text)}")

    def warn(self, text: str) -> None:
        self._write(f"{INDENT}{self._style('!', _YELLOW)} {text}")

    def failed(self, text: str) -> None:
        """The reason the demo stops (the step that failed and why)."""
        self._write()
        where = f"step {self.current} failed: " if self.current else ""
        self._write(self._style(f"✗ {where}", _RED) + text)

    def plain(self, text: str = "") -> None:
        self._write(text)

    @contextmanager
    def timed(self) -> Iterator[list[float]]:
        """``with console.timed() as t: ...`` then ``t[0]`` holds the seconds it took."""
        took = [0.0]
        started = time.monotonic()
        try:
            yield took
        finally:
            took[0] = time.monotonic() - started

    def timings(self) -> str:
        """How long each step took, as a table (the last one ends now)."""
        ends = [start for _, start in self._steps[1:]] + [time.monotonic()]
        rows = [
            [f"{i}", name, f"{end - start:.1f} s"]
            for i, ((name, start), end) in enumerate(zip(self._steps, ends, strict=True), 1)
        ]
        rows.append(["", "total (teardown not included)", f"{self.elapsed():.1f} s"])
        return table(["step", "", "time"], rows, right=(0, 2))

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self.started
