"""``GET /v1/requests/{id}/events`` against ``pilothouse serve`` processes: a caller follows an
accepted request over server-sent events, from ``queued`` (no worker yet) through the step
events to the result, and the stream ends; an answered request streams its steps and result at
once; an unknown id is a 404."""

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

        assert [n for n, _ in rest] == ["step", "result"]
        step, result = rest[0][1], rest[1][1]
        assert (step["type"], step["tool"], step["params"], step["ok"]) == (
            "tool_call",
            "weather_api",
            {"city": "Tokyo"},
            True,
        )
        assert result["request_id"] == rid
        assert result["status"] == "completed"
        assert result == client.get(f"/v1/requests/{rid}").json()["result"]

        # Answered already: the steps and the result at once, no state event.
        with client.stream("GET", f"/v1/requests/{rid}/events") as again:
            assert [n for n, _ in events(again.iter_lines())] == ["step", "result"]

        missing = client.get("/v1/requests/req-never-sent/events")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
