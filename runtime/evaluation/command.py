"""``pilothouse eval``: score an agent on a dataset and gate on the score.

::

    pilothouse eval DATASET (--url URL | --config FILE) [--threshold 0.8] [--baseline FILE]
                    [--report json|junit|markdown] [--output FILE] [--concurrency N]
                    [--token TOKEN] [--judge-endpoint URL --judge-model NAME]

Exit status: 0 when the score reaches the threshold (and, with ``--fail-on-regression``, no
example regressed against the baseline), 1 when it does not, 2 on bad input (dataset, config,
options), 3 when the target cannot be set up (e.g. the in-process agent's Redis is down).

The report goes to ``--output`` (or stdout); the table of results goes to stdout, or to
stderr when the report takes stdout. Heavy modules are imported in :func:`run`, so building
the ``pilothouse`` parser stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pilothouse.runtime import errors

if TYPE_CHECKING:
    from pilothouse.runtime.evaluation import judges, results, targets

__all__ = ["EXIT_BELOW_THRESHOLD", "EXIT_TARGET_FAILED", "configure_parser", "run"]

EXIT_BELOW_THRESHOLD = 1
EXIT_TARGET_FAILED = 3
TOKEN_ENV = "PILOTHOUSE_EVAL_TOKEN"
DEFAULT_THRESHOLD = 0.8


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    parser.add_argument(
        "dataset", help="dataset file (.jsonl, .yaml) or the name of a shipped dataset"
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running runtime (POST /agent/process)")
    where.add_argument(
        "--config", metavar="FILE", help="runtime config: build the agent in this process"
    )
    parser.add_argument(
        "--threshold",
        type=_unit_interval,
        default=DEFAULT_THRESHOLD,
        help="lowest passing score, 0..1 (%(default)s); 0 never fails",
    )
    parser.add_argument("--baseline", metavar="FILE", help="JSON report of an earlier run")
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when an example that passed in the baseline fails now",
    )
    parser.add_argument("--report", choices=["json", "junit", "markdown"], help="report format")
    parser.add_argument("--output", metavar="FILE", help="write the report here (default stdout)")
    parser.add_argument(
        "--concurrency", type=_positive_int, default=4, help="examples in flight (%(default)s)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"bearer token for --url (also from ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for one answer (%(default)s)"
    )
    parser.add_argument(
        "--scorers",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first: it registers custom expectation kinds (repeatable)",
    )
    judge = parser.add_argument_group("LLM judge (for the 'judge' expectation)")
    judge.add_argument("--judge-endpoint", help="OpenAI-compatible base URL, e.g. .../v1")
    judge.add_argument("--judge-model", help="model name")
    judge.add_argument("--judge-api-key-env", metavar="VAR", help="variable holding the API key")
    judge.add_argument("--judge-timeout", type=float, default=30.0, help="seconds (%(default)s)")
    parser.add_argument(
        "--progress",
        choices=["auto", "bar", "plain", "none"],
        default="auto",
        help="progress on stderr: a bar on a terminal, plain lines otherwise (%(default)s)",
    )


def _judge(args: argparse.Namespace) -> judges.Judge | None:
    if not args.judge_endpoint and not args.judge_model:
        return None
    if not (args.judge_endpoint and args.judge_model):
        raise errors.UsageError("--judge-endpoint and --judge-model go together")
    from pilothouse.runtime import config
    from pilothouse.runtime.evaluation import judges

    try:
        model = config.ModelConfig(
            endpoint=args.judge_endpoint,
            name=args.judge_model,
            api_key_env=args.judge_api_key_env,
            timeout_seconds=args.judge_timeout,
        )
    except ValueError as e:
        raise errors.UsageError(f"judge: {e}") from e
    return judges.Judge(model)


def _target(args: argparse.Namespace) -> targets.Target:
    from pilothouse.runtime.evaluation import targets

    if args.url:
        return targets.HttpTarget(args.url, token=args.token, timeout_s=args.timeout)
    return targets.InProcessTarget(args.config)


def _write(text: str, path: str | None) -> None:
    if path is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise errors.UsageError(f"{path}: cannot write the report: {e.strerror or e}") from e


async def _evaluate(args: argparse.Namespace) -> results.RunReport:
    from pilothouse.runtime.evaluation import datasets, progress, results, runner

    for module in args.scorers:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise errors.UsageError(f"--scorers {module}: cannot import: {e}") from e
    dataset = datasets.load_dataset(args.dataset)
    baseline = results.load_report(args.baseline) if args.baseline else None
    judge = _judge(args)
    runner.check_runnable(dataset, judge)
    target = _target(args)
    mode = args.progress
    show = None
    if mode != "none":
        tty = None if mode == "auto" else mode == "bar"
        show = progress.Progress(len(dataset), tty=tty)
    try:
        start = getattr(target, "start", None)
        if start is not None:
            await start()
        return await runner.run(
            dataset,
            target,
            concurrency=args.concurrency,
            threshold=args.threshold,
            baseline=baseline,
            baseline_source=args.baseline or "",
            judge=judge,
            on_result=show,
        )
    finally:
        if show is not None:
            show.close()
        await target.aclose()
        if judge is not None:
            await judge.aclose()


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; the exit status is the gate's verdict."""
    from pilothouse.runtime.evaluation import reports

    if args.output is not None:
        if args.report is None:
            raise errors.UsageError("--output needs --report json|junit|markdown")
        if not Path(args.output).parent.is_dir():
            raise errors.UsageError(f"--output {args.output}: no such directory")
    try:
        report = asyncio.run(_evaluate(args))
    except errors.UsageError:
        raise
    except errors.RuntimeFailure as e:
        print(f"pilothouse eval: {e}", file=sys.stderr)
        return EXIT_TARGET_FAILED
    report_to_stdout = args.report is not None and args.output is None
    if args.report is not None:
        _write(reports.render(report, args.report), args.output)
    table = reports.table(report)
    print(table, file=sys.stderr if report_to_stdout else sys.stdout)
    if not report.gate_passed:
        return EXIT_BELOW_THRESHOLD
    if args.fail_on_regression and report.comparison is not None and report.comparison.regressed:
        return EXIT_BELOW_THRESHOLD
    return 0
