"""``DELETE /v1/requests/{id}`` against ``pilothouse serve`` processes: a queued request is
refused as soon as a worker takes it (no LLM call made), a running one stops before its next
step (the tool it was about to call is never called), both recorded in the decision history;
an answered request cannot be cancelled (409) and an unknown one is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import Launcher, launcher, runtime_config, wait_for

from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def launch(redis_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    yield from launcher(redis_url, postgres_dsn, tmp_path)


def answered(client: httpx.Client, rid: str) -> dict[str, Any] | None:
    state = client.get(f"/v1/requests/{rid}").json()
    result: dict[str, Any] | None = state.get("result")
    return result


def history(client: httpx.Client, rid: str) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = client.get(f"/v1/requests/{rid}/decisions").json()["decisions"]
    return found if found and found[-1]["action"] == "refused" else None


def config_for(name: str, llm: MockLLMProcess, tool_server: ToolServer) -> dict[str, Any]:
    tools = [t.model_dump(mode="json", by_alias=True) for t in standard_tools(tool_server.url)]
    return runtime_config(name, llm.url, tools=tools)


def test_a_queued_request_is_refused_when_a_worker_takes_it(
    launch: Launcher, llm: MockLLMProcess, tool_server: ToolServer, unique_name: str
) -> None:
    doc = config_for(unique_name, llm, tool_server)
    api = launch(doc, role="api")  # no worker: the request stays queued
    with httpx.Client(base_url=api.url, timeout=30) as client:
        rid = client.post("/v1/requests", json={"input": "What is 2+2?"}).json()["request_id"]
        cancel = client.delete(f"/v1/requests/{rid}")
        assert cancel.status_code == 202, cancel.text
        assert cancel.json() == {"request_id": rid, "state": "cancelling"}
        assert cancel.headers["location"] == f"/v1/requests/{rid}"

        launch(doc, role="worker")
        result = wait_for(lambda: answered(client, rid), timeout=20, what="the refusal")
        assert (result["status"], result["policy"]) == ("refused", "cancelled")
        assert rid in (result["refusal_reason"] or "")
        assert llm.admin.stats()["by_path"].get("/v1/chat/completions", 0) == 0

        decisions = wait_for(lambda: history(client, rid), timeout=20, what="the history")
        assert [(d["action"], d["outcome"]) for d in decisions][-1] == ("refused", "denied")
        assert not any(d["action"] == "llm_call" for d in decisions)

        # Answered: nothing left to cancel. Unknown: not found.
        done = client.delete(f"/v1/requests/{rid}")
        assert done.status_code == 409
        assert done.json()["error"] == "conflict"
        assert client.delete("/v1/requests/req-never-sent").status_code == 404


def test_a_running_request_stops_before_its_next_step(
    launch: Launcher, llm: MockLLMProcess, tool_server: ToolServer, unique_name: str
) -> None:
    llm.admin.set_faults(latency_ms=1_500)  # the first LLM call is in flight long enough
    api = launch(config_for(unique_name, llm, tool_server))
    with httpx.Client(base_url=api.url, timeout=30) as client:
        accepted = client.post("/v1/requests", json={"input": "What's the weather in Tokyo?"})
        rid = accepted.json()["request_id"]
        wait_for(lambda: llm.admin.stats()["in_flight"], timeout=20, what="the first LLM call")
        assert client.delete(f"/v1/requests/{rid}").status_code == 202

        result = wait_for(lambda: answered(client, rid), timeout=20, what="the refusal")
        assert (result["status"], result["policy"]) == ("refused", "cancelled")
        # The model asked for the weather tool; the request stopped before calling it.
        assert tool_server.received == []
        assert llm.admin.stats()["by_path"].get("/v1/chat/completions", 0) == 1

        decisions = wait_for(lambda: history(client, rid), timeout=20, what="the history")
        actions = [(d["action"], d["outcome"]) for d in decisions]
        assert actions[-1] == ("refused", "denied")
        assert [a for a, _ in actions].index("llm_call") < len(actions) - 1
        denied = [d for d in decisions if d["outcome"] == "denied" and d["action"] != "refused"]
        assert [d["policy"] for d in denied] == ["cancelled"]
