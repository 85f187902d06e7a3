"""The runner: send every example to a target with bounded concurrency, score, aggregate.

Called by the ``pilothouse eval`` command and the pytest plugin::

    report = await runner.run(dataset, target, concurrency=4, threshold=0.8, baseline=old)

Examples run concurrently, at most ``concurrency`` at a time; the turns of a conversation run
in order, in one session (``session_id``). Every request gets a fresh id derived from the run
id, so a run never collides with an earlier one in the runtime's idempotency store and each
request can be found in the audit trail (its ``metadata`` names the dataset and example). A
failed request fails its example with the reason; the run itself only fails on bad input.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from pilothouse.runtime import errors, requests
from pilothouse.runtime.evaluation import datasets, judges, results, scorers, targets

__all__ = ["DEFAULT_CONCURRENCY", "ProgressFn", "check_runnable", "new_run_id", "run", "score"]

DEFAULT_CONCURRENCY = 4
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._:-]+")

ProgressFn = Callable[[results.ExampleResult], None]
"""Called with each example's result as it completes (in completion order)."""


def new_run_id() -> str:
    """A fresh run id (``eval-`` + 12 hex digits)."""
    return f"eval-{uuid.uuid4().hex[:12]}"


def check_runnable(dataset: datasets.Dataset, judge: judges.Judge | None) -> None:
    """Refuse, before sending anything, a run that cannot score its dataset."""
    if "judge" in dataset.kinds and judge is None:
        uses = [str(e.line) for e in dataset if any(x.kind == "judge" for x in e.expectations)]
        raise errors.UsageError(
            f"{dataset.source}: lines {', '.join(uses)} use the 'judge' expectation but no judge "
            "model is configured (--judge-endpoint and --judge-model)"
        )


def _turn_record(
    request: requests.AgentRequest, result: requests.AgentResult
) -> results.TurnRecord:
    return results.TurnRecord(
        input=request.input,
        request_id=request.request_id,
        answer=result.answer,
        status=result.status.value,
        refused=result.refused,
        actions=[{"tool": a.tool, "params": a.params, "ok": a.ok} for a in result.actions],
        cost_usd=result.cost_usd,
        latency_ms=result.latency_ms,
    )


async def score(
    example: datasets.Example,
    observed: scorers.Observed,
    *,
    registry: scorers.Registry,
    judge: judges.Judge | None = None,
) -> list[results.ExpectationResult]:
    """Score every expectation of ``example`` against what the agent did."""
    ctx = scorers.ScoringContext(example_id=example.id, judge=judge)
    out = []
    for expectation in example.expectations:
        scorer = registry.get(expectation.kind)
        if scorer is None:  # a kind unregistered after the dataset was loaded
            s = scorers.Score.fail(f"no scorer registered for {expectation.kind!r}")
        else:
            s = await scorer.evaluate(expectation.spec, observed, ctx)
        out.append(results.ExpectationResult(kind=expectation.kind, **_fields(s)))
    return out


def _fields(s: scorers.Score) -> dict[str, object]:
    return {"score": s.value, "passed": s.passed, "reason": s.reason}


async def _run_example(
    index: int,
    example: datasets.Example,
    target: targets.Target,
    *,
    run_id: str,
    dataset: str,
    registry: scorers.Registry,
    judge: judges.Judge | None,
) -> results.ExampleResult:
    started = time.perf_counter()
    session = f"{run_id}-{index}" if example.is_conversation else None
    label = _UNSAFE_ID.sub("_", example.id)[:100]
    sent: list[requests.AgentResult] = []
    turns: list[results.TurnRecord] = []
    error: str | None = None
    for n, text in enumerate(example.turns):
        request = requests.AgentRequest(
            request_id=f"{run_id}-{index}-{n}",
            input=text,
            session_id=session,
            metadata={"evaluation_run": run_id, "dataset": dataset, "example": label},
        )
        try:
            result = await target.send(request)
        except targets.TargetError as e:
            error = f"turn {n + 1}: {e}" if example.is_conversation else str(e)
            break
        sent.append(result)
        turns.append(_turn_record(request, result))
    common = {
        "id": example.id,
        "line": example.line,
        "tags": list(example.tags),
        "weight": example.weight,
        "turns": turns,
    }
    if error is not None:
        return results.ExampleResult(
            **common,
            score=0.0,
            passed=False,
            error=error,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
    observed = scorers.Observed(inputs=example.turns, results=tuple(sent))
    scored = await score(example, observed, registry=registry, judge=judge)
    return results.ExampleResult(
        **common,
        score=sum(e.score for e in scored) / len(scored),
        passed=all(e.passed for e in scored),
        expectations=scored,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


async def run(
    dataset: datasets.Dataset,
    target: targets.Target,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    threshold: float | None = None,
    baseline: results.RunReport | None = None,
    baseline_source: str = "",
    judge: judges.Judge | None = None,
    registry: scorers.Registry | None = None,
    on_result: ProgressFn | None = None,
    run_id: str | None = None,
) -> results.RunReport:
    """Run every example of ``dataset`` against ``target`` and build the report."""
    if concurrency < 1:
        raise errors.UsageError(f"concurrency must be at least 1, not {concurrency}")
    check_runnable(dataset, judge)
    run_id = run_id or new_run_id()
    registry = registry or scorers.REGISTRY
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, example: datasets.Example) -> results.ExampleResult:
        async with gate:
            result = await _run_example(
                index,
                example,
                target,
                run_id=run_id,
                dataset=dataset.name,
                registry=registry,
                judge=judge,
            )
        if on_result is not None:
            on_result(result)
        return result

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i, ex)) for i, ex in enumerate(dataset.examples)]
    examples = [t.result() for t in tasks]
    report = results.RunReport(
        run_id=run_id,
        dataset=dataset.name,
        dataset_source=dataset.source,
        dataset_sha256=dataset.sha256,
        target=target.description,
        started_at=started_at,
        elapsed_s=time.perf_counter() - started,
        threshold=threshold,
        examples=examples,
        summary=results.summarize(examples),
    )
    if baseline is not None:
        comparison = results.compare(report, baseline, source=baseline_source)
        report = report.model_copy(update={"comparison": comparison})
    return report
