"""The Pilothouse pytest plugin: evaluate an agent on a dataset from a test, in a few lines.

Registered as a ``pytest11`` entry point, so it loads in every pytest run where Pilothouse is
installed. It therefore imports nothing heavy at import time (the evaluation modules load when
a test uses the fixture) and defines nothing autouse: it adds options and one fixture::

    def test_quality_on_dataset(pilothouse_eval):
        report = pilothouse_eval.run("customer_support_v1")     # --pilothouse-url / -config
        assert report.score >= 0.8, report.explain()

or ``pilothouse_eval.check("customer_support_v1", threshold=0.8)``, which fails the test with
the list of failing examples and their reasons. In ``async`` tests use ``await .arun(...)``.

Options: ``--pilothouse-url URL`` (a running runtime), ``--pilothouse-config FILE`` (build the
agent in-process; needs its Redis), ``--pilothouse-token``, ``--pilothouse-concurrency``,
``--pilothouse-threshold``, ``--pilothouse-report-dir DIR`` (each run's JSON report is saved
there). A relative dataset path is looked up next to the test file first.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pilothouse.runtime.evaluation import results, scorers

__all__ = ["Evaluator", "pilothouse_eval", "pytest_addoption"]

_DEFAULT_THRESHOLD = 0.8


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--pilothouse-*`` options."""
    group = parser.getgroup("pilothouse", "Pilothouse agent evaluation")
    group.addoption("--pilothouse-url", help="base URL of the runtime the evaluations talk to")
    group.addoption(
        "--pilothouse-config", help="runtime config: evaluations build the agent in-process"
    )
    group.addoption(
        "--pilothouse-token",
        default=os.environ.get("PILOTHOUSE_EVAL_TOKEN"),
        help="bearer token for --pilothouse-url (also $PILOTHOUSE_EVAL_TOKEN)",
    )
    group.addoption("--pilothouse-concurrency", type=int, default=4, help="examples in flight")
    group.addoption(
        "--pilothouse-threshold",
        type=float,
        default=_DEFAULT_THRESHOLD,
        help="default threshold of pilothouse_eval.check()",
    )
    group.addoption("--pilothouse-report-dir", help="save each evaluation's JSON report here")


class Evaluator:
    """What the ``pilothouse_eval`` fixture gives a test."""

    def __init__(
        self,
        *,
        url: str | None = None,
        config: str | None = None,
        token: str | None = None,
        concurrency: int = 4,
        threshold: float = _DEFAULT_THRESHOLD,
        report_dir: str | None = None,
        base_dir: Path | None = None,
        name: str = "eval",
    ) -> None:
        self.url = url
        self.config = config
        self.token = token
        self.concurrency = concurrency
        self.threshold = threshold
        self.report_dir = report_dir
        self.base_dir = base_dir
        self.name = name
        self.reports: list[results.RunReport] = []
        """Every report this evaluator produced, in order."""

    def _dataset_path(self, dataset: str | os.PathLike[str]) -> str | Path:
        path = Path(dataset)
        if not path.is_absolute() and self.base_dir is not None:
            beside = self.base_dir / path
            if beside.exists():
                return beside
        return dataset if isinstance(dataset, str) else path

    async def arun(
        self,
        dataset: str | os.PathLike[str],
        *,
        url: str | None = None,
        config: str | None = None,
        token: str | None = None,
        concurrency: int | None = None,
        threshold: float | None = None,
        baseline: str | os.PathLike[str] | None = None,
        registry: scorers.Registry | None = None,
    ) -> results.RunReport:
        """Run ``dataset`` against the agent and return the report (async tests)."""
        from pilothouse.runtime.evaluation import datasets, runner, targets
        from pilothouse.runtime.evaluation import results as results_module

        url = url or (None if config else self.url)
        config = config or (None if url else self.config)
        if not url and not config:
            pytest.fail(
                "pilothouse_eval: no agent to evaluate; pass --pilothouse-url or "
                "--pilothouse-config, or url=/config= to run()",
                pytrace=False,
            )
        loaded = datasets.load_dataset(self._dataset_path(dataset), registry=registry)
        target: targets.Target
        if url:
            target = targets.HttpTarget(url, token=token or self.token)
        else:
            in_process = targets.InProcessTarget(str(config))
            target = in_process
            await in_process.start()
        try:
            report = await runner.run(
                loaded,
                target,
                concurrency=concurrency or self.concurrency,
                threshold=self.threshold if threshold is None else threshold,
                baseline=results_module.load_report(Path(baseline)) if baseline else None,
                baseline_source=str(baseline or ""),
                registry=registry,
            )
        finally:
            await target.aclose()
        self.reports.append(report)
        self._save(report)
        return report

    def run(self, dataset: str | os.PathLike[str], **options: Any) -> results.RunReport:
        """Run ``dataset`` (see :meth:`arun` for the options) from a synchronous test."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(dataset, **options))
        raise RuntimeError("pilothouse_eval.run() in a running event loop: use await .arun()")

    def check(
        self, dataset: str | os.PathLike[str], *, threshold: float | None = None, **options: Any
    ) -> results.RunReport:
        """Run ``dataset`` and fail the test, listing the failures, below the threshold."""
        wanted = self.threshold if threshold is None else threshold
        report = self.run(dataset, threshold=wanted, **options)
        if report.score < wanted:
            pytest.fail(f"quality score {report.score:.3f} < {wanted:.3f}\n{report.explain()}")
        return report

    def _save(self, report: results.RunReport) -> None:
        if not self.report_dir:
            return
        folder = Path(self.report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        path = folder / f"{safe}-{report.dataset}-{len(self.reports)}.json"
        path.write_text(report.to_json(), encoding="utf-8")


@pytest.fixture
def pilothouse_eval(request: pytest.FixtureRequest) -> Evaluator:
    """Evaluate an agent on a dataset: ``pilothouse_eval.run(dataset)`` returns the report."""
    option = request.config.getoption
    return Evaluator(
        url=option("pilothouse_url"),
        config=option("pilothouse_config"),
        token=option("pilothouse_token"),
        concurrency=option("pilothouse_concurrency"),
        threshold=option("pilothouse_threshold"),
        report_dir=option("pilothouse_report_dir"),
        base_dir=request.path.parent,
        name=request.node.name,
    )
