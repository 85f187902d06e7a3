"""What the reliable agent loop costs on top of a bare LLM call.

The same mock LLM (0 ms latency, a real HTTP server in its own process) answers both sides:

* baseline: a bare ``httpx.AsyncClient`` POST of the same chat completion, JSON parsed;
* agent: ``Agent.handle`` on the same question, with everything of the loop on: admission and
  LLM policy checks (the default allow-all hook), the circuit breaker in a real Redis
  (``redis-server`` via devservers), retries, decision records, spans (API, no exporter), metrics;
* agent + session: the same with a ``session_id`` (history read and turn written in Redis).

Rounds alternate the variants so machine noise hits them alike; the medians of the per-round
means are reported. Also measured: client CPU per request (the mock's CPU is in another process)
and Redis round trips per request (counted on the client's connections). Writes
``bench/results/agent_loop.json``
and ``.md``.

    python -m bench agent_loop [--requests 400] [--rounds 5] [--concurrency 16]
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

import httpx
import orjson
import redis.asyncio as aioredis

from pilothouse.runtime import agent, config, devservers, requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

RESULTS = Path(__file__).parent / "results"
QUESTION = "What is 2+2?"
SYSTEM_PROMPT = "You are a helpful customer support agent."


def _config(llm_url: str, redis_url: str) -> config.RuntimeConfig:
    return config.RuntimeConfig(
        agent="bench-agent",
        system_prompt=SYSTEM_PROMPT,
        model=config.ModelConfig(
            endpoint=llm_url,
            name="mock-llm",
            pricing=config.ModelPricing(
                input_per_million_tokens=0.15, output_per_million_tokens=0.6
            ),
        ),
        redis=config.RedisConfig(url=redis_url, key_prefix="bench"),
    )


class _CountingConnection(aioredis.Connection):
    """Counts round trips: a pipeline or MULTI/EXEC is one send, so one count."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


async def _timed(
    call: Callable[[int], Awaitable[None]], n: int
) -> tuple[list[float], float, float]:
    """Per-request latencies (s), total wall time (s) and client CPU time (s) of n calls."""
    latencies = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - wall0, time.process_time() - cpu0


async def _throughput(call: Callable[[int], Awaitable[None]], n: int, concurrency: int) -> float:
    """Requests per second with ``concurrency`` callers sharing n requests."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await call(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


def _summary(latencies: list[float], wall: float, cpu: float) -> dict[str, float]:
    n = len(latencies)
    ordered = sorted(latencies)
    return {
        "mean_ms": wall / n * 1000,
        "p50_ms": ordered[n // 2] * 1000,
        "p99_ms": ordered[min(n - 1, int(n * 0.99))] * 1000,
        "cpu_ms": cpu / n * 1000,
    }


async def run(n: int, rounds: int, concurrency: int) -> dict[str, Any]:
    with devservers.RedisServer() as redis_server, MockLLMProcess(seed=1) as llm:
        redis_server.start()
        client = aioredis.Redis.from_url(redis_server.url, connection_class=_CountingConnection)
        http = httpx.AsyncClient()
        cfg = _config(llm.url, redis_server.url)
        the_agent = agent.build_agent(cfg, redis=client)
        url = llm.url + "/chat/completions"
        body = {
            "model": "mock-llm",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": QUESTION},
            ],
        }
        headers = {"content-type": "application/json"}

        async def bare(i: int) -> None:
            response = await http.post(url, content=orjson.dumps(body), headers=headers)
            assert response.status_code == 200
            assert "4" in orjson.loads(response.content)["choices"][0]["message"]["content"]

        async def loop(i: int) -> None:
            outcome = await the_agent.handle(requests.AgentRequest(input=QUESTION))
            assert outcome.result.status is requests.ResultStatus.COMPLETED, outcome.result

        async def loop_session(i: int) -> None:
            outcome = await the_agent.handle(
                requests.AgentRequest(input=QUESTION, session_id=f"bench-{i % 50}")
            )
            assert outcome.result.status is requests.ResultStatus.COMPLETED, outcome.result

        variants: dict[str, Callable[[int], Awaitable[None]]] = {
            "baseline": bare,
            "agent": loop,
            "agent_session": loop_session,
        }
        try:
            for call in variants.values():  # warm up pools, scripts, imports
                for i in range(50):
                    await call(i)
            per_round: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
            round_trips: dict[str, float] = {}
            for _ in range(rounds):
                for name, call in variants.items():
                    before = _CountingConnection.sent
                    summary = _summary(*await _timed(call, n))
                    round_trips[name] = (_CountingConnection.sent - before) / n
                    per_round[name].append(summary)
            throughput = {
                name: statistics.median(
                    [await _throughput(call, n, concurrency) for _ in range(rounds)]
                )
                for name, call in variants.items()
            }
        finally:
            await the_agent.aclose()
            await http.aclose()
            await client.aclose()
    medians = {
        name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        for name, rows in per_round.items()
    }
    base = medians["baseline"]
    result: dict[str, Any] = {
        "name": "agent_loop",
        "requests_per_round": n,
        "rounds": rounds,
        "concurrency": concurrency,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "variants": medians,
        "redis_round_trips_per_request": round_trips,
        "throughput_rps": throughput,
    }
    for name in ("agent", "agent_session"):
        v = medians[name]
        result[name] = {
            "added_ms_per_request": v["mean_ms"] - base["mean_ms"],
            "added_cpu_ms_per_request": v["cpu_ms"] - base["cpu_ms"],
            "latency_ratio": v["mean_ms"] / base["mean_ms"],
            "cpu_ratio": v["cpu_ms"] / base["cpu_ms"],
            "throughput_ratio": throughput[name] / throughput["baseline"],
        }
    return result


def _markdown(r: dict[str, Any]) -> str:
    v, rt = r["variants"], r["redis_round_trips_per_request"]
    lines = [
        "# Agent loop overhead",
        "",
        f"Mock LLM at 0 ms, Redis local; {r['requests_per_round']} sequential requests x "
        f"{r['rounds']} rounds (medians), throughput at concurrency {r['concurrency']}; "
        f"{r['machine']['cpus']} CPUs, Python {r['machine']['python']}.",
        "",
        "| variant | mean ms | p50 ms | p99 ms | client CPU ms | Redis round trips/req | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("baseline", "agent", "agent_session"):
        s = v[name]
        lines.append(
            f"| {name} | {s['mean_ms']:.3f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
            f"{s['cpu_ms']:.3f} | {rt[name]:.2f} | {r['throughput_rps'][name]:.0f} |"
        )
    lines += [
        "",
        "| vs baseline | added ms/req | added CPU ms/req | latency x | throughput x |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("agent", "agent_session"):
        a = r[name]
        lines.append(
            f"| {name} | {a['added_ms_per_request']:.3f} | {a['added_cpu_ms_per_request']:.3f} | "
            f"{a['latency_ratio']:.2f} | {a['throughput_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench agent_loop", description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.requests, args.rounds, args.concurrency))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "agent_loop.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "agent_loop.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
