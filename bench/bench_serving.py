"""What the full runtime costs over a bare "demo agent", both served over HTTP the same way.

Two servers answer ``POST /agent/process`` with ``{"input": "What is 2+2?"}``, in the same run,
against the same mock LLM (a real HTTP server in its own process):

* demo: the original write-up's demo agent, a FastAPI endpoint on uvicorn that calls the LLM
  directly (no queue, no policies, no audit, no retries);
* runtime: ``pilothouse serve --role all``: the HTTP API, the Redis Streams queue, the worker
  pool, the agent loop with the shared circuit breaker, a policy set that touches Redis
  (safety, compliance with PII redaction, a rate limit and a cost limit), the batched audit
  writer into PostgreSQL, metrics, JSON logs.

Load: N concurrent keep-alive clients (a minimal HTTP/1.1 client, so the load generator costs
little), each sending requests back to back for a fixed time after a warm-up; the two systems
alternate at every level. With a 50 ms LLM at 1..256 clients: median and p99 latency, the
runtime's added latency and its throughput ratio. With a 0 ms LLM: requests per second per
core, from the server process's CPU time (the mock LLM, Redis and PostgreSQL are separate
processes; their CPU per request is reported beside it). Writes ``bench/results/serving.json``
and ``.md``.

    python -m bench serving [--levels 1,8,64,256] [--seconds 3] [--repeats 2] [--warmup 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from pilothouse.runtime import devservers, serving, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

RESULTS = Path(__file__).parent / "results"
BODY = json.dumps({"input": "What is 2+2?"}).encode()
PATH = "/agent/process"
DEMO_CONCURRENCY = 512
"""Sizes the demo's connection pools like the runtime's ``workers.concurrency`` below."""


# ----------------------------------------------------------------------------- demo agent


class Ask(BaseModel):
    """The demo agent's request body."""

    input: str


def serve_demo(port: int, llm_url: str) -> None:
    """The demo agent: one endpoint, one LLM call, nothing else (run in its own process)."""
    app = FastAPI()
    # The same connection pools as the runtime's agent: the comparison is about the pillars.
    client = serving.pooled_http_client(DEMO_CONCURRENCY)

    @app.post(PATH)
    async def process(ask: Ask) -> dict[str, str]:
        r = await client.post(
            f"{llm_url}/chat/completions",
            timeout=30,
            json={"model": "mock", "messages": [{"role": "user", "content": ask.input}]},
        )
        return {"answer": r.json()["choices"][0]["message"]["content"]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ----------------------------------------------------------------------------------- load


@dataclass
class Run:
    system: str
    clients: int
    llm_ms: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    server_cpu_s: float
    server_cpu_ms_per_req: float
    deps_cpu_ms_per_req: float
    """Redis + PostgreSQL CPU per request (the runtime's dependencies; ~0 for the demo)."""


async def _client(port: int, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"POST {PATH} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if head[9:12] != b"200":
                errors.append(int(head[9:12]))
                continue
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def _load(port: int, clients: int, seconds: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(port, stop_at, latencies, errors) for _ in range(clients)))
    return latencies, len(errors), time.perf_counter() - started


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


@dataclass
class _Window:
    latencies: list[float]
    errors: int
    seconds: float
    cpu: float
    deps_cpu: float


def window(port: int, pid: int, deps: list[int], clients: int, args: Any) -> _Window:
    """One measured window after a warm-up, with the CPU the server spent during it."""
    asyncio.run(_load(port, clients, args.warmup))
    cpu0, deps0 = _cpu([pid]), _cpu(deps)
    latencies, errors, elapsed = asyncio.run(_load(port, clients, args.seconds))
    return _Window(latencies, errors, elapsed, _cpu([pid]) - cpu0, _cpu(deps) - deps0)


def summarize(system: str, clients: int, llm_ms: int, windows: list[_Window]) -> Run:
    """Pool the windows of one system at one level (samples, time and CPU added up)."""
    ordered = sorted(x for w in windows for x in w.latencies)
    n = len(ordered)
    elapsed = sum(w.seconds for w in windows)
    cpu = sum(w.cpu for w in windows)
    return Run(
        system=system,
        clients=clients,
        llm_ms=llm_ms,
        requests=n,
        errors=sum(w.errors for w in windows),
        seconds=round(elapsed, 3),
        rps=round(n / elapsed, 1),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(ordered[min(n - 1, int(n * 0.99))] * 1000, 2),
        mean_ms=round(statistics.fmean(ordered) * 1000, 2),
        server_cpu_s=round(cpu, 3),
        server_cpu_ms_per_req=round(cpu / n * 1000, 3),
        deps_cpu_ms_per_req=round(sum(w.deps_cpu for w in windows) / n * 1000, 3),
    )


# ------------------------------------------------------------------------------- systems


def runtime_config(llm_url: str) -> dict[str, Any]:
    return {
        "agent": "bench-serving",
        "systemPrompt": "You are a helpful customer support agent.",
        "model": {
            "endpoint": llm_url,
            "name": "mock",
            "pricing": {"inputPerMillionTokens": 0.15, "outputPerMillionTokens": 0.6},
        },
        "workers": {"concurrency": DEMO_CONCURRENCY, "queueMaxLength": 100_000},
        "policies": [
            {
                "name": "guard",
                "safety": {"denyPatterns": ["(?i)drop\\s+table"], "blockPromptInjection": True},
                "compliance": {"redactPii": True},
                "rateLimit": {"requestsPerMinute": 10_000_000},
                "costLimit": {"maxUsdPerHour": 1_000_000},
            }
        ],
        "telemetry": {"logLevel": "info"},
    }


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json={"input": "warm up"}, timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _report(runs: list[Run], meta: dict[str, Any]) -> dict[str, Any]:
    by = {(r.system, r.clients, r.llm_ms): r for r in runs}
    compared = []
    for (system, clients, llm_ms), r in sorted(by.items(), key=lambda kv: (-kv[0][2], kv[0][1])):
        if system != "runtime":
            continue
        d = by[("demo", clients, llm_ms)]
        compared.append(
            {
                "clients": clients,
                "llm_ms": llm_ms,
                "added_p50_ms": round(r.p50_ms - d.p50_ms, 2),
                "added_p99_ms": round(r.p99_ms - d.p99_ms, 2),
                "throughput_ratio": round(r.rps / d.rps, 3) if d.rps else None,
                "runtime_rps_per_core": round(1000 / r.server_cpu_ms_per_req, 1),
                "demo_rps_per_core": round(1000 / d.server_cpu_ms_per_req, 1),
            }
        )
    return {"meta": meta, "runs": [asdict(r) for r in runs], "compared": compared}


def _markdown(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    lines = [
        "# Serving overhead: full runtime vs a bare demo agent",
        "",
        f"Same mock LLM, same HTTP server style (FastAPI on uvicorn); {meta['seconds']} s per "
        f"point in {meta['windows']} windows alternating with the other system, each after "
        f"{meta['warmup']} s warm-up; {meta['cpus']} CPUs shared by everything "
        f"(load generator, both servers, mock LLM, Redis, PostgreSQL); Python {meta['python']}.",
        "",
        "| LLM ms | clients | system | req/s | p50 ms | p99 ms | server CPU ms/req "
        "| Redis+PG CPU ms/req | errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["runs"]:
        lines.append(
            f"| {r['llm_ms']} | {r['clients']} | {r['system']} | {r['rps']} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {r['server_cpu_ms_per_req']} | {r['deps_cpu_ms_per_req']} "
            f"| {r['errors']} |"
        )
    lines += [
        "",
        "| LLM ms | clients | added p50 ms | added p99 ms | throughput ratio "
        "| runtime req/s per core | demo req/s per core |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["compared"]:
        lines.append(
            f"| {c['llm_ms']} | {c['clients']} | {c['added_p50_ms']} | {c['added_p99_ms']} "
            f"| {c['throughput_ratio']} | {c['runtime_rps_per_core']} "
            f"| {c['demo_rps_per_core']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench serving")
    parser.add_argument("--levels", default="1,8,64,256")
    parser.add_argument("--seconds", type=float, default=3.0, help="per window")
    parser.add_argument("--repeats", type=int, default=2, help="windows per system and level")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--cpu-clients", type=int, default=32)
    parser.add_argument("--demo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--llm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.demo_server:
        serve_demo(args.demo_server, args.llm)
        return 0
    levels = [int(x) for x in args.levels.split(",")]
    runs: list[Run] = []
    with (
        devservers.RedisServer() as redis,
        devservers.PostgresServer() as pg,
        MockLLMProcess(seed=1) as llm,
    ):
        redis.start()
        pg.start()
        deps = [p.pid for p in (redis._proc, pg._proc) if p is not None]
        demo_port = devservers.free_port()
        demo_argv = [sys.executable, "-m", "bench.bench_serving", "--demo-server", str(demo_port)]
        demo = subprocess.Popen([*demo_argv, "--llm", llm.url])
        env = {"PILOTHOUSE_REDIS_URL": redis.url, "PILOTHOUSE_POSTGRES_DSN": pg.dsn}
        try:
            _wait_http(f"http://127.0.0.1:{demo_port}{PATH}")
            with testing.RuntimeProcess(runtime_config(llm.url), env=env) as rt:
                systems = {"demo": (demo_port, demo.pid), "runtime": (rt.port, rt.pid)}
                for port, _ in systems.values():  # connection pools, caches, first-use paths
                    asyncio.run(_load(port, 16, args.warmup))
                for llm_ms, points in ((50, levels), (0, [args.cpu_clients])):
                    llm.admin.set_faults(latency_ms=llm_ms)
                    for clients in points:
                        # The systems alternate, window by window, so noise hits both alike.
                        windows: dict[str, list[_Window]] = {"demo": [], "runtime": []}
                        for r in range(args.repeats):
                            order = ["demo", "runtime"] if r % 2 == 0 else ["runtime", "demo"]
                            for system in order:
                                port, pid = systems[system]
                                windows[system].append(window(port, pid, deps, clients, args))
                        for system, ws in windows.items():
                            run = summarize(system, clients, llm_ms, ws)
                            print(
                                f"llm {llm_ms:>2} ms  clients {clients:>3}  {system:<7} "
                                f"{run.rps:>7.1f} req/s  p50 {run.p50_ms:>7.2f}  "
                                f"p99 {run.p99_ms:>7.2f} ms  cpu {run.server_cpu_ms_per_req} ms",
                                flush=True,
                            )
                            runs.append(run)
        finally:
            demo.terminate()
            demo.wait(10)
    meta = {
        "seconds": args.seconds * args.repeats,
        "windows": args.repeats,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "question": BODY.decode(),
    }
    doc = _report(runs, meta)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "serving.md").write_text(_markdown(doc))
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
