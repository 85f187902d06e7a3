"""A worker SIGKILLed mid-request: the replica that takes the entry over continues after the
last completed step. Counted where the calls land (the mock LLM's per-rule counters, the tool
server's log of requests): no completed LLM call or tool call is made again, the one step in
flight runs at most once more, and a tool call carries the same ``Idempotency-Key`` both times
(request id, agent, step), which the audit trail records. Real ``pilothouse serve`` processes,
Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import Launcher, audit_counts, await_for, launcher, runtime_config, wait_for

from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

REQUESTS = 4
QUESTION = "What is the weather in Paris?"


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def _config(agent: str, llm_url: str, tool_server: ToolServer) -> dict[str, Any]:
    gated = {"weather_api": {"url": f"{tool_server.url}/gated-weather", "timeout_seconds": 20.0}}
    tools = [
        t.model_dump(mode="json", by_alias=True) for t in standard_tools(tool_server.url, **gated)
    ]
    return runtime_config(
        agent,
        llm_url,
        tools=tools,
        workers={"concurrency": REQUESTS, "visibilityTimeoutSeconds": 1.5},
        reliability={"requestTimeoutSeconds": 30},
    )


def _gated_calls(tool_server: ToolServer) -> list[Any]:
    return [r for r in tool_server.received if r.path == "/gated-weather"]


async def _send(client: httpx.AsyncClient, ids: list[str]) -> list[asyncio.Task[httpx.Response]]:
    return [
        asyncio.create_task(
            client.post("/v1/requests?wait=60", json={"input": QUESTION, "request_id": rid})
        )
        for rid in ids
    ]


async def _check_answers_and_audit(
    client: httpx.AsyncClient,
    calls: list[asyncio.Task[httpx.Response]],
    ids: list[str],
    postgres_dsn: str,
) -> dict[str, list[dict[str, Any]]]:
    """Every request answered by the model and audited once, no step twice; the histories."""
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * REQUESTS, [r.text for r in responses]
    assert all(r.json()["status"] == "completed" for r in responses)
    assert all("sunny" in r.json()["answer"] for r in responses)

    async def all_audited() -> dict[str, tuple[int, int, int]] | None:
        counts = await audit_counts(postgres_dsn, ids)
        return counts if all(c[0] for c in counts.values()) else None

    counts = await await_for(all_audited, within=20, what="every request audited")
    assert {rid: c[0] for rid, c in counts.items()} == dict.fromkeys(ids, 1)
    assert all(c[1] == c[2] > 0 for c in counts.values())
    return {
        rid: (await client.get(f"/v1/requests/{rid}/decisions")).json()["decisions"] for rid in ids
    }


async def test_a_tool_call_in_flight_runs_once_more_with_the_same_key_and_the_model_not_again(
    launch: Launcher, tool_server: ToolServer, postgres_dsn: str, unique_name: str
) -> None:
    ids = [f"req-{unique_name}-{i}" for i in range(REQUESTS)]
    with MockLLMProcess(seed=21) as llm:
        doc = _config(unique_name, llm.url, tool_server)
        api = launch(doc, role="api")
        doomed = launch(doc, role="worker")
        async with httpx.AsyncClient(base_url=api.url, timeout=90) as client:
            calls = await _send(client, ids)
            # Each request's first model call is answered (a weather_api call) and checkpointed;
            # its tool call is held at the gate when the worker dies.
            await await_for(
                lambda: asyncio.sleep(0, result=len(_gated_calls(tool_server)) == REQUESTS),
                within=30,
                what="every request's tool call in flight",
            )
            doomed.kill()
            tool_server.open_gate()
            launch(doc, role="worker")
            histories = await _check_answers_and_audit(client, calls, ids, postgres_dsn)

        rules = llm.admin.stats()["by_rule"]
    # The model's first step (completed before the kill) was not asked again.
    assert rules.get("weather") == REQUESTS
    assert rules.get("weather-answer") == REQUESTS
    # The tool call in flight ran once more, with the same key both times.
    keys = collections.Counter(r.headers.get("idempotency-key") for r in _gated_calls(tool_server))
    assert None not in keys
    assert sorted(keys.values()) == [2] * REQUESTS
    for rid in ids:
        [key] = [k for k in keys if k is not None and f":{rid}:" in k]
        assert key.startswith(f"{unique_name}:{rid}:")
        history = histories[rid]
        actions = [d["action"] for d in history]
        assert "resume" in actions
        assert actions.count("llm_call") == 2  # one per model call made, none repeated
        [tool_record] = [d for d in history if d["action"] == "tool_call"]
        assert tool_record["action_params"]["idempotency_key"] == key


async def test_a_completed_tool_call_is_not_made_again_when_the_next_model_call_dies(
    launch: Launcher, tool_server: ToolServer, postgres_dsn: str, unique_name: str
) -> None:
    ids = [f"req-{unique_name}-{i}" for i in range(REQUESTS)]
    with MockLLMProcess(seed=22) as llm:
        doc = _config(unique_name, llm.url, tool_server)
        api = launch(doc, role="api")
        doomed = launch(doc, role="worker")
        async with httpx.AsyncClient(base_url=api.url, timeout=90) as client:
            calls = await _send(client, ids)
            await await_for(
                lambda: asyncio.sleep(0, result=len(_gated_calls(tool_server)) == REQUESTS),
                within=30,
                what="every request's tool call in flight",
            )
            # The tool calls complete (and are checkpointed); the model calls that follow hang
            # at the mock LLM when the worker dies.
            llm.admin.update_faults(latency_ms=120_000)
            tool_server.open_gate()
            wait_for(
                lambda: llm.admin.stats()["delayed"] == REQUESTS,
                timeout=30,
                what="every request's second model call in flight",
            )
            doomed.kill()
            llm.admin.clear_faults()
            launch(doc, role="worker")
            histories = await _check_answers_and_audit(client, calls, ids, postgres_dsn)
        rules = llm.admin.stats()["by_rule"]

    # Each tool call was made once: its result came from the checkpoint on redelivery.
    keys = collections.Counter(r.headers.get("idempotency-key") for r in _gated_calls(tool_server))
    assert sorted(keys.values()) == [1] * REQUESTS
    assert rules.get("weather") == REQUESTS  # the first model step not repeated either
    for rid in ids:
        actions = [d["action"] for d in histories[rid]]
        assert actions.count("tool_call") == 1
        assert "resume" in actions
