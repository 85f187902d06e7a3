"""Run the pinned ``promtool`` (built by :func:`binaries.build_promtool`) from tests.

The chart's alert rules are checked and unit-tested with it (``check rules --lint=all``,
``test rules``) and the runtime's and operator's scraped ``/metrics`` with ``check metrics``:
Prometheus's own parser and linter, not a re-implementation. Used by the ``promtool`` fixtures
of e2e/conftest.py and tests/integration/conftest.py. Standard library only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["Promtool"]


class Promtool:
    """One promtool binary; each method returns the finished process (exit code and output)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self, *args: str, input: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path), *args],
            input=input,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def check_rules(self, rules: Path) -> subprocess.CompletedProcess[str]:
        """``check rules --lint=all``: syntax, PromQL, duplicates and every lint."""
        return self.run("check", "rules", "--lint=all", "--lint-fatal", str(rules))

    def test_rules(self, tests: Path) -> subprocess.CompletedProcess[str]:
        """``test rules``: the unit tests in ``tests`` (rule files relative to it)."""
        return self.run("test", "rules", tests.name, cwd=tests.parent)

    def check_metrics(self, exposition: str) -> subprocess.CompletedProcess[str]:
        """``check metrics``: a Prometheus text exposition parses and passes the linter."""
        return self.run("check", "metrics", input=exposition)
