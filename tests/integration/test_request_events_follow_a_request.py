"""``GET /v1/requests/{id}/events`` against ``pilothouse serve`` processes: a caller follows an
accepted request over server-sent events, from ``queued`` (no worker yet) through each step as
it starts (relayed from the worker while the request runs) and the outcomes to the result, and
the stream ends; an answered request streams its outcomes and result at once; an unknown id is
a 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import Launcher, launcher, runtime_config

from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(name, data) of each server-sent event; comments are skipped."""
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            assert name is not None, line
            yield name, orjson.loads(line.removeprefix("data: "))
            name = None


def test_a_caller_follows_a_request_from_queued_to_its_result(
    launch: Launcher, llm: MockLLMProcess, tool_server: ToolServer, unique_name: str
) -> None:
    tools = [t.model_dump(mode="json", by_alias=True) for t in standard_tools(tool_server.url)]
    doc = runtime_config(unique_name, llm.url, tools=tools)
    api = launch(doc, role="api")  # no worker yet: the request stays queued
    with httpx.Client(base_url=api.url, timeout=60) as client:
        accepted = client.post("/v1/requests", json={"input": "What's the weather in Tokyo?"})
        assert accepted.status_code == 202, accepted.text
        rid = accepted.json()["request_id"]

        with client.stream("GET", f"/v1/requests/{rid}/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            received = events(stream.iter_lines())
            name, first = next(received)
            assert (name, first["request_id"], first["state"]) == ("state", rid, "queued")

            launch(doc, role="worker")  # now someone answers it
            rest = list(received)  # the stream ends after the result

        assert [n for n, _ in rest] == ["step"] * 5 + ["result"]
        steps = [data for _, data in rest[:-1]]
        # As each step starts (relayed from the worker), then the outcome once answered.
        assert [s["type"] for s in steps] == [
            "started",
            "llm_call_started",
            "tool_call_started",
            "llm_call_started",
            "tool_call",
        ]
        assert (steps[2]["tool"], steps[2]["params"]) == ("weather_api", {"city": "Tokyo"})
        outcome = steps[-1]
        assert (outcome["tool"], outcome["params"], outcome["ok"]) == (
            "weather_api",
            {"city": "Tokyo"},
            True,
        )
        result = rest[-1][1]
        assert result["request_id"] == rid
        assert result["status"] == "completed"
        assert result == client.get(f"/v1/requests/{rid}").json()["result"]

        # Answered already: the steps and the result at once, no state event.
        with client.stream("GET", f"/v1/requests/{rid}/events") as again:
            assert [n for n, _ in events(again.iter_lines())] == ["step", "result"]

        missing = client.get("/v1/requests/req-never-sent/events")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"


def test_steps_arrive_while_the_request_is_still_running(
    launch: Launcher, llm: MockLLMProcess, unique_name: str
) -> None:
    llm.admin.set_faults(latency_ms=3_000)  # the answer cannot be stored before the LLM answers
    doc = runtime_config(unique_name, llm.url)
    api = launch(doc, role="api")
    with httpx.Client(base_url=api.url, timeout=60) as client:
        rid = client.post("/v1/requests", json={"input": "What is 2+2?"}).json()["request_id"]
        with client.stream("GET", f"/v1/requests/{rid}/events") as stream:
            received = events(stream.iter_lines())
            assert next(received)[0] == "state"  # followed from here on
            launch(doc, role="worker")
            seen = []
            for name, data in received:
                assert name == "step", (name, data)
                seen.append(data["type"])
                if data["type"] == "llm_call_started":
                    break
            assert seen == ["started", "llm_call_started"]
            # The LLM call has started, not finished: the request is not answered yet.
            assert client.get(f"/v1/requests/{rid}").json()["state"] == "queued"
            names = [n for n, _ in received]
        assert names[-1] == "result"
