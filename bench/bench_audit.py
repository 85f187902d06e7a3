"""Audit throughput: the batched, hash-chained writer against one INSERT per record.

Both sides write the same decision-shaped rows into the same PostgreSQL (a real server via
devservers), in the same process, once with fsync on (durable, as in production) and once with
fsync off (commits nearly free: what is left is the client's work):

* baseline: the same shaping (redaction, normalisation, hash chain), then one ``INSERT`` per
  record, each its own commit, over one connection;
* writer: :class:`AuditWriter` as the worker uses it: ``concurrency`` tasks each hand over a
  finished request (``submit_result``: the summary row + its decision records) and wait until
  it is durable; group commit batches them, each batch one transaction that locks the agent's
  chain head, dedupes, links the hashes and ``COPY``\\s the rows in.

Rounds alternate the two; medians are reported, with the caller's wait per ``submit_result``.
Writes ``bench/results/audit.json`` and ``.md``.

    python -m bench audit [--requests 2000] [--rounds 3] [--concurrency 64]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from pilothouse.runtime import config, devservers, records, requests
from pilothouse.runtime.audit import chain, rows, store, writers

RESULTS = Path(__file__).parent / "results"
STEPS = 4
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _decisions(agent: str, request_id: str) -> list[records.AgentDecision]:
    return [
        records.AgentDecision(
            request_id=request_id,
            agent_id=agent,
            step=step,
            action="llm_call" if step < STEPS - 1 else "answer",
            input="What's the weather in Tokyo? Reply to jane@example.com",
            action_params={"model": "gpt-4o-mini", "temperature": 0.2, "tools": ["weather_api"]},
            result={"content": "It is sunny in Tokyo, 21 degrees.", "finish_reason": "stop"},
            latency_ms=812.4,
            cost_usd=0.00021,
            input_tokens=420,
            output_tokens=36,
            model="gpt-4o-mini",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            timestamp=T0 + timedelta(milliseconds=step),
        )
        for step in range(STEPS)
    ]


async def _baseline(dsn: str, schema: str, n_requests: int, agent: str) -> dict[str, float]:
    settings = rows.AuditSettings(redact_pii=True)
    work = [_decisions(agent, f"{agent}-{i}") for i in range(n_requests)]
    columns = [*rows.DECISION_COLUMNS, "chain_seq", "prev_hash", "hash"]
    sql = (
        f"INSERT INTO audit_decisions ({', '.join(columns)}) VALUES "
        f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
    )
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    head = chain.ChainPoint(0, chain.GENESIS)
    try:
        started = time.perf_counter()
        for decisions in work:
            # The same shaping (redaction, normalisation, hash chain) as the writer, then one
            # INSERT per record, each its own commit.
            for r in chain.link(head, [rows.decision_row(d, settings) for d in decisions]):
                await conn.execute(sql, *store._decision_record(r))
                head = chain.ChainPoint(r.chain_seq, r.hash)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    n = n_requests * STEPS
    return {"records": n, "seconds": elapsed, "records_per_s": n / elapsed}


async def _writer(
    audit_store: store.AuditStore, n_requests: int, concurrency: int, agent: str
) -> dict[str, float]:
    cfg = config.AuditConfig(spool_dir=tempfile.mkdtemp(prefix="bench-audit-spool-"))
    w = await writers.AuditWriter(audit_store, cfg, rows.AuditSettings(redact_pii=True)).start()
    work = [
        (
            requests.AgentRequest(request_id=f"{agent}-{i}", input="What's the weather in Tokyo?"),
            _decisions(agent, f"{agent}-{i}"),
        )
        for i in range(n_requests)
    ]
    waits: list[float] = []
    queue = iter(work)

    async def worker() -> None:
        for request, decisions in queue:
            result = requests.AgentResult(
                request_id=request.request_id, agent_id=agent, status="completed", answer="Sunny."
            )
            t = time.perf_counter()
            await w.submit_result(request, result, decisions)
            waits.append(time.perf_counter() - t)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await w.close()
    n = n_requests * (STEPS + 1)
    waits.sort()
    return {
        "records": n,
        "seconds": elapsed,
        "records_per_s": n / elapsed,
        "wait_p50_ms": waits[len(waits) // 2] * 1000,
        "wait_p99_ms": waits[int(len(waits) * 0.99)] * 1000,
        "spooled": w.spooled,
    }


async def _compare(args: argparse.Namespace, *, fsync: bool) -> dict[str, Any]:
    with devservers.PostgresServer(fsync=fsync) as pg:
        pg.start()
        audit_store = await store.AuditStore(pg.dsn, schema_name="bench_writer").open()
        await audit_store.migrate()
        base_store = await store.AuditStore(pg.dsn, schema_name="bench_baseline").open()
        await base_store.migrate()
        baseline_runs, writer_runs = [], []
        try:
            for r in range(args.rounds):
                baseline_runs.append(
                    await _baseline(pg.dsn, "bench_baseline", args.baseline_requests, f"b{r}")
                )
                writer_runs.append(
                    await _writer(audit_store, args.requests, args.concurrency, f"w{r}")
                )
        finally:
            await audit_store.close()
            await base_store.close()

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    baseline = {k: median(baseline_runs, k) for k in ("records", "records_per_s")}
    writer = {
        k: median(writer_runs, k)
        for k in ("records", "records_per_s", "wait_p50_ms", "wait_p99_ms")
    }
    return {
        "fsync": fsync,
        "baseline_insert_per_record": baseline,
        "batched_writer": writer,
        "throughput_ratio": writer["records_per_s"] / baseline["records_per_s"],
        "rounds": {"baseline": baseline_runs, "writer": writer_runs},
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    durable = await _compare(args, fsync=True)
    fast = await _compare(args, fsync=False)
    return {
        "benchmark": "audit",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": sys.platform,
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "params": vars(args),
        "fsync_on": durable,
        "fsync_off": fast,
    }


def _markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    lines = [
        "# Audit writer throughput",
        "",
        f"PostgreSQL 18 local, one process; medians of {p['rounds']} rounds; "
        f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}, "
        f"load average {result['machine']['load_average_1m_at_end']:.1f} at the end "
        "(the CPUs are shared with other work: compare ratios, not absolute numbers). Both sides "
        "shape records alike (redaction, normalisation, hash chain).",
        "",
        "| PostgreSQL | variant | records/s | caller wait p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for key, label in (("fsync_on", "fsync on (durable)"), ("fsync_off", "fsync off")):
        b, w = result[key]["baseline_insert_per_record"], result[key]["batched_writer"]
        lines += [
            f"| {label} | one INSERT per record (own commit) | {b['records_per_s']:,.0f} | | |",
            f"| {label} | batched writer, {p['concurrency']} concurrent submit_result "
            f"(summary + {STEPS} decisions) | {w['records_per_s']:,.0f} | "
            f"{w['wait_p50_ms']:.1f} | {w['wait_p99_ms']:.1f} |",
        ]
    lines += [
        "",
        "Batched writer / one INSERT per record: "
        f"**{result['fsync_on']['throughput_ratio']:.1f}x** with fsync on, "
        f"**{result['fsync_off']['throughput_ratio']:.1f}x** with fsync off.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per writer round")
    parser.add_argument("--baseline-requests", type=int, default=500, help="per baseline round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    result = asyncio.run(main(parser.parse_args()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "audit.md").write_text(_markdown(result))
    print(_markdown(result))
