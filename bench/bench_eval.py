"""What the evaluation harness costs on top of sending the same messages to the agent.

Both sides talk to the same real agent in this process (``agent.build_agent`` with the policy
engine, real Redis via devservers, the mock LLM speaking the shipped ``customer_support_v1``
scenario at 0 ms, the evaluation tool server), with the same concurrency:

* baseline: every message of the shipped dataset sent with ``Agent.handle`` (conversations in
  order, in a session), results thrown away;
* eval: ``runner.run`` of the dataset through the in-process target (request building, scoring
  of every expectation, aggregation, the report), then the JSON and JUnit reports rendered.

Rounds alternate so machine noise hits both alike; medians are reported. Also measured: the
scoring alone (every expectation of the dataset scored against recorded results), per
expectation. Writes ``bench/results/eval.json`` and ``.md``.

    python -m bench eval [--rounds 15] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from pilothouse.runtime import devservers, requests
from pilothouse.runtime.evaluation import datasets, reports, runner, scorers, targets, toolserver
from pilothouse.runtime.mockllm.process import MockLLMProcess

RESULTS = Path(__file__).parent / "results"
SHIPPED = Path(datasets.__file__).parent
SCORING_REPEATS = 200


def _config(folder: Path, llm_url: str, tools_url: str) -> Path:
    data = yaml.safe_load((SHIPPED / "customer_support_v1.runtime.yaml").read_text())
    data["agent"] = "bench-eval"
    data["model"]["endpoint"] = llm_url
    for tool in data["tools"]:
        tool["url"] = tool["url"].replace(f"http://127.0.0.1:{toolserver.DEFAULT_PORT}", tools_url)
    path = folder / "runtime.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def _baseline(
    target: targets.InProcessTarget, dataset: datasets.Dataset, concurrency: int
) -> float:
    gate = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]

    async def one(i: int, example: datasets.Example) -> None:
        async with gate:
            session = f"base-{run}-{i}" if example.is_conversation else None
            for text in example.turns:
                await target.send(requests.AgentRequest(input=text, session_id=session))

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i, example in enumerate(dataset):
            group.create_task(one(i, example))
    return time.perf_counter() - t0


async def _evaluate(
    target: targets.InProcessTarget, dataset: datasets.Dataset, concurrency: int
) -> float:
    t0 = time.perf_counter()
    report = await runner.run(dataset, target, concurrency=concurrency, threshold=0.8)
    reports.render(report, "json")
    reports.render(report, "junit")
    elapsed = time.perf_counter() - t0
    assert report.score == 1.0, report.explain()
    return elapsed


async def _scoring_us(target: targets.InProcessTarget, dataset: datasets.Dataset) -> float:
    """Mean time to score one expectation, on results recorded from the agent."""
    observed = []
    for i, example in enumerate(dataset):
        session = f"score-{uuid.uuid4().hex[:8]}-{i}" if example.is_conversation else None
        results = [
            await target.send(requests.AgentRequest(input=t, session_id=session))
            for t in example.turns
        ]
        observed.append((example, scorers.Observed(example.turns, tuple(results))))
    count = sum(len(e.expectations) for e in dataset) * SCORING_REPEATS
    t0 = time.perf_counter()
    for _ in range(SCORING_REPEATS):
        for example, seen in observed:
            await runner.score(example, seen, registry=scorers.REGISTRY)
    return (time.perf_counter() - t0) / count * 1e6


async def run(rounds: int, concurrency: int) -> dict[str, Any]:
    dataset = datasets.load_dataset("customer_support_v1")
    messages = sum(len(e.turns) for e in dataset)
    with (
        devservers.RedisServer() as redis_server,
        MockLLMProcess(scenario=SHIPPED / "customer_support_v1.scenario.yaml", seed=1) as llm,
        toolserver.ToolServerProcess() as tools,
        tempfile.TemporaryDirectory() as folder,
    ):
        redis_server.start()
        cfg = _config(Path(folder), llm.url, tools.url)
        target = targets.InProcessTarget(cfg, environ={"PILOTHOUSE_REDIS_URL": redis_server.url})
        await target.start()
        try:
            await _baseline(target, dataset, concurrency)  # warm up pools, scripts, imports
            await _evaluate(target, dataset, concurrency)
            base, evals = [], []
            for _ in range(rounds):
                base.append(await _baseline(target, dataset, concurrency))
                evals.append(await _evaluate(target, dataset, concurrency))
            scoring = await _scoring_us(target, dataset)
        finally:
            await target.aclose()
    b, e = statistics.median(base), statistics.median(evals)
    return {
        "name": "eval",
        "dataset": dataset.name,
        "examples": len(dataset),
        "messages": messages,
        "expectations": sum(len(x.expectations) for x in dataset),
        "rounds": rounds,
        "concurrency": concurrency,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "baseline_s": b,
        "eval_s": e,
        "baseline_examples_per_s": len(dataset) / b,
        "eval_examples_per_s": len(dataset) / e,
        "time_ratio": e / b,
        "added_ms_per_example": (e - b) / len(dataset) * 1000,
        "scoring_us_per_expectation": scoring,
    }


def _markdown(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            "# Evaluation harness overhead",
            "",
            f"The shipped `{r['dataset']}` dataset ({r['examples']} examples, {r['messages']} "
            f"messages, {r['expectations']} expectations) against the real agent in-process "
            f"(mock LLM at 0 ms, local Redis, tool server); concurrency {r['concurrency']}, "
            f"medians of {r['rounds']} alternating rounds; {r['machine']['cpus']} CPUs, "
            f"Python {r['machine']['python']}.",
            "",
            "| variant | seconds per run | examples/s |",
            "|---|---:|---:|",
            f"| baseline (messages only) | {r['baseline_s']:.3f} | "
            f"{r['baseline_examples_per_s']:.0f} |",
            f"| eval (+ scoring, report, JSON + JUnit) | {r['eval_s']:.3f} | "
            f"{r['eval_examples_per_s']:.0f} |",
            "",
            f"Eval / baseline time: **{r['time_ratio']:.2f}x** "
            f"({r['added_ms_per_example']:+.2f} ms per example); scoring alone "
            f"{r['scoring_us_per_expectation']:.1f} µs per expectation.",
            "",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench eval")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.rounds, args.concurrency))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "eval.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
