"""Requests through HTTP end to end, against ``pilothouse serve`` started as a real process with
real Redis, PostgreSQL, the mock LLM and a real tool server: answers come back (waiting, polling
or synchronously), a request id is answered once, and ``/decisions`` returns the history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import audit_counts, await_for, runtime_config, runtime_env, wait_for

from pilothouse.runtime import testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runtime(
    redis_url: str,
    postgres_dsn: str,
    module_tool_server: ToolServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[testing.RuntimeProcess]:
    tools = [
        t.model_dump(mode="json", by_alias=True) for t in standard_tools(module_tool_server.url)
    ]
    # Own mock LLM: this runtime is module-scoped, the shared `llm` fixture per test.
    with MockLLMProcess(seed=7) as llm:
        cfg = runtime_config("e2e-http", llm.url, tools=tools)
        workdir: Path = tmp_path_factory.mktemp("e2e-http")
        with testing.RuntimeProcess(
            cfg, env=runtime_env(redis_url, postgres_dsn), workdir=workdir
        ) as rt:
            yield rt


@pytest.fixture
def client(runtime: testing.RuntimeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runtime.url, timeout=30) as c:
        yield c


def test_waiting_caller_gets_the_answer_and_the_history(client: httpx.Client) -> None:
    r = client.post("/v1/requests", params={"wait": 10}, json={"input": "What is 2+2?"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "completed"
    assert "4" in result["answer"]
    rid = result["request_id"]

    state = client.get(f"/v1/requests/{rid}").json()
    assert state["state"] == "done"
    assert state["result"] == result

    def history() -> list[dict[str, object]] | None:
        h = client.get(f"/v1/requests/{rid}/decisions")
        assert h.status_code == 200, h.text
        found: list[dict[str, object]] = h.json()["decisions"]
        return found if found and found[-1]["action"] == "answer" else None

    decisions = wait_for(history, timeout=10, what="the decision history")
    steps = [d["step"] for d in decisions]
    assert steps == sorted(steps)
    assert {d["request_id"] for d in decisions} == {rid}
    assert any(d["action"] == "llm_call" for d in decisions)


def test_accepted_request_is_answered_and_readable_from_its_location(
    client: httpx.Client,
) -> None:
    r = client.post("/v1/requests", json={"input": "What is 2+2?", "metadata": {"case": "poll"}})
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    assert r.headers["location"] == f"/v1/requests/{rid}"

    def answered() -> dict[str, object] | None:
        doc: dict[str, object] = client.get(r.headers["location"]).json()
        return doc if doc["state"] == "done" else None

    doc = wait_for(answered, timeout=10, what="the answer")
    assert doc["result"]["answer"]  # type: ignore[index]


def test_synchronous_endpoint_calls_the_tool(
    client: httpx.Client, module_tool_server: ToolServer
) -> None:
    r = client.post("/agent/process", json={"input": "What's the weather in Tokyo?"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "completed"
    [action] = result["actions"]
    assert action["tool"] == "weather_api"
    assert action["ok"] is True
    assert action["params"]["city"].lower() == "tokyo"
    assert any(rec.path == "/weather" for rec in module_tool_server.received)


async def test_a_request_id_sent_twice_is_answered_and_audited_once(
    runtime: testing.RuntimeProcess, postgres_dsn: str, unique_name: str
) -> None:
    rid = f"req-{unique_name}"
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
        body = {"input": "What is 2+2?", "request_id": rid}
        first = await client.post("/v1/requests?wait=10", json=body)
        assert first.status_code == 200, first.text
        body = {"input": "Something else", "request_id": rid}
        again = await client.post("/v1/requests?wait=10", json=body)
    assert again.status_code == 200
    assert again.json() == first.json()

    async def audited() -> tuple[int, int, int] | None:
        counts = (await audit_counts(postgres_dsn, [rid]))[rid]
        return counts if counts[0] else None

    summaries, decisions, steps = await await_for(audited, within=10, what="the audit rows")
    assert summaries == 1
    assert decisions == steps > 0


def test_unknown_requests_are_404(client: httpx.Client) -> None:
    r = client.get("/v1/requests/req-does-not-exist")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert "req-does-not-exist" in r.json()["message"]
    r = client.get("/v1/requests/req-does-not-exist/decisions")
    assert r.status_code == 404


def test_history_holds_only_this_agents_decisions_when_another_agent_reuses_the_id(
    client: httpx.Client,
    redis_url: str,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    # Request ids are the callers': two agents may each answer a request called the same.
    rid = f"shared-{tmp_path.name[-8:]}"
    with MockLLMProcess(seed=3) as llm:
        other_cfg = runtime_config("e2e-http-other", llm.url)
        with testing.RuntimeProcess(
            other_cfg, env=runtime_env(redis_url, postgres_dsn), workdir=tmp_path
        ) as other:
            with httpx.Client(base_url=other.url, timeout=30) as other_client:
                r = other_client.post(
                    "/v1/requests",
                    params={"wait": 10},
                    json={"request_id": rid, "input": "What is 3+3?"},
                )
                assert r.status_code == 200, r.text
            r = client.post(
                "/v1/requests",
                params={"wait": 10},
                json={"request_id": rid, "input": "What is 2+2?"},
            )
            assert r.status_code == 200, r.text

            def history() -> list[dict[str, object]] | None:
                found: list[dict[str, object]] = client.get(f"/v1/requests/{rid}/decisions").json()[
                    "decisions"
                ]
                return found if found and found[-1]["action"] == "answer" else None

            decisions = wait_for(history, timeout=10, what="this agent's decision history")
    assert {d["agent_id"] for d in decisions} == {"e2e-http"}
    steps = [d["step"] for d in decisions]
    assert steps == sorted(set(steps)), "another agent's steps are mixed in"
