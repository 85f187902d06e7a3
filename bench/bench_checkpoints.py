"""What durable step checkpoints cost: client CPU per step, with and without them, same run.

Two agents share one mock LLM (0 ms latency, its own process), one tool server (its own
process) and one real Redis: one stores a checkpoint after every completed step in Redis (the
work queue's ``save_checkpoint``, as ``pilothouse serve`` wires it), the other stores none.
Two questions: ``What is 2+2?`` (one step: the model's answer) and ``What is the weather in
Paris?`` (three: a tool call, its result, the answer). Rounds alternate the variants so machine
noise hits them alike; medians of the per-round CPU per request are reported, and the added
CPU per checkpoint is (with - without) / checkpoints per request. Writes
``bench/results/checkpoints.json`` and ``.md``.

    python -m bench checkpoints [--requests 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from pilothouse.runtime import agent, config, devservers, queue, requests
from pilothouse.runtime.evaluation import toolserver
from pilothouse.runtime.mockllm.process import MockLLMProcess

RESULTS = Path(__file__).parent / "results"
QUESTIONS = {"one_step": "What is 2+2?", "three_steps": "What is the weather in Paris?"}
TARGET_CPU_MS_PER_STEP = 0.2


class _CountingStore:
    """The work queue as the checkpoint store, counting the checkpoints stored."""

    def __init__(self, work_queue: queue.WorkQueue) -> None:
        self.queue = work_queue
        self.saved = 0

    async def save_checkpoint(self, request_id: str, data: bytes) -> None:
        self.saved += 1
        await self.queue.save_checkpoint(request_id, data)

    async def load_checkpoint(self, request_id: str) -> bytes | None:
        return await self.queue.load_checkpoint(request_id)


def _config(llm_url: str, redis_url: str, tool_url: str) -> config.RuntimeConfig:
    return config.parse_config(
        {
            "agent": "bench-checkpoints",
            "systemPrompt": "You are a helpful customer support agent.",
            "model": {"endpoint": llm_url, "name": "mock-llm"},
            "redis": {"url": redis_url, "keyPrefix": "bench"},
            "tools": [
                {
                    "name": "weather_api",
                    "description": "Current weather for a city.",
                    "url": f"{tool_url}/weather",
                    "method": "GET",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ],
        }
    )


async def _cpu_per_request(call: Callable[[int], Awaitable[None]], n: int) -> float:
    cpu0 = time.process_time()
    for i in range(n):
        await call(i)
    return (time.process_time() - cpu0) / n * 1000


async def run(n: int, rounds: int) -> dict[str, Any]:
    with (
        devservers.RedisServer() as redis_server,
        MockLLMProcess(seed=1) as llm,
        toolserver.ToolServerProcess() as tools,
    ):
        redis_server.start()
        client = aioredis.Redis.from_url(redis_server.url)
        cfg = _config(llm.url, redis_server.url, tools.url)
        store = _CountingStore(queue.WorkQueue(client, cfg, consumer="bench"))
        without = agent.build_agent(cfg, redis=client)
        with_checkpoints = agent.build_agent(cfg, redis=client, checkpoint_store=store)

        def caller(the_agent: agent.Agent, text: str) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                outcome = await the_agent.handle(requests.AgentRequest(input=text))
                assert outcome.result.status is requests.ResultStatus.COMPLETED, outcome.result

            return call

        variants = {
            (q, name): caller(a, text)
            for q, text in QUESTIONS.items()
            for name, a in (("without", without), ("with", with_checkpoints))
        }
        steps: dict[str, float] = {}
        try:
            for call in variants.values():  # warm up pools, scripts, imports
                for i in range(30):
                    await call(i)
            per_round: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
            for _ in range(rounds):
                for (q, name), call in variants.items():
                    before = store.saved
                    per_round[(q, name)].append(await _cpu_per_request(call, n))
                    if name == "with":
                        steps[q] = (store.saved - before) / n
        finally:
            await without.aclose()
            await with_checkpoints.aclose()
            await client.aclose()
    questions: dict[str, Any] = {}
    for q in QUESTIONS:
        off = statistics.median(per_round[(q, "without")])
        on = statistics.median(per_round[(q, "with")])
        questions[q] = {
            "checkpoints_per_request": steps[q],
            "cpu_ms_per_request_without": off,
            "cpu_ms_per_request_with": on,
            "cpu_ratio": on / off,
            "added_cpu_ms_per_step": (on - off) / steps[q],
        }
    return {
        "name": "checkpoints",
        "requests_per_round": n,
        "rounds": rounds,
        "target_cpu_ms_per_step": TARGET_CPU_MS_PER_STEP,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "questions": questions,
    }


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Step checkpoints: CPU per step",
        "",
        f"Mock LLM at 0 ms, tool server and Redis local; {r['requests_per_round']} sequential "
        f"requests x {r['rounds']} rounds (medians), variants alternated; "
        f"{r['machine']['cpus']} CPUs, Python {r['machine']['python']}. "
        f"Target: under {r['target_cpu_ms_per_step']} ms of CPU per step.",
        "",
        "| question | checkpoints/req | CPU ms/req without | CPU ms/req with | CPU x "
        "| added CPU ms/step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for q, v in r["questions"].items():
        lines.append(
            f"| {q} | {v['checkpoints_per_request']:.1f} | "
            f"{v['cpu_ms_per_request_without']:.3f} | {v['cpu_ms_per_request_with']:.3f} | "
            f"{v['cpu_ratio']:.3f} | {v['added_cpu_ms_per_step']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench checkpoints", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.requests, args.rounds))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "checkpoints.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "checkpoints.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
