"""Escalations through a real ``pilothouse serve`` process: the return tool waits for a human;
approved with ``POST /v1/escalations/{id}/approve`` the request resumes and completes; denied
with the ``pilothouse escalations deny`` command (straight into PostgreSQL) the runtime
notices and answers the caller with a clear refusal."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_support import ToolServer, standard_tools
from serving_support import AUDIT_SCHEMA, runtime_config, runtime_env, wait_for

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
    policies = [{"name": "refunds", "escalation": {"tools": ["initiate_return"]}}]
    with MockLLMProcess(seed=9) as llm:
        cfg = runtime_config(f"esc-{uuid.uuid4().hex[:8]}", llm.url, tools=tools, policies=policies)
        workdir: Path = tmp_path_factory.mktemp("esc-http")
        with testing.RuntimeProcess(
            cfg, env=runtime_env(redis_url, postgres_dsn), workdir=workdir
        ) as rt:
            yield rt


@pytest.fixture
def client(runtime: testing.RuntimeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runtime.url, timeout=30) as c:
        yield c


def _escalate(client: httpx.Client) -> dict[str, Any]:
    session = f"s-{uuid.uuid4().hex[:10]}"
    for text in ("I want to return my order", "The order number is 12345"):
        r = client.post(
            "/v1/requests", params={"wait": 10}, json={"input": text, "session_id": session}
        )
        assert r.status_code == 200, r.text
    r = client.post(
        "/v1/requests",
        params={"wait": 10},
        json={"input": "Yes, that's correct", "session_id": session},
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    assert result["status"] == "escalated"
    assert result["policy"] == "refunds"
    return result


def _final(
    client: httpx.Client, request_id: str, *, not_status: str = "escalated"
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        r = client.get(f"/v1/requests/{request_id}")
        if r.status_code != 200 or r.json().get("state") != "done":
            return None
        result: dict[str, Any] = r.json()["result"]
        return result if result["status"] != not_status else None

    return wait_for(done, timeout=20, what=f"the final answer of {request_id}")


def test_approved_over_http_the_request_resumes_and_completes(
    client: httpx.Client, module_tool_server: ToolServer
) -> None:
    escalated = _escalate(client)
    pending = client.get("/v1/escalations").json()["escalations"]
    assert escalated["escalation_id"] in [e["escalation_id"] for e in pending]
    returns_before = sum(r.path == "/returns" for r in module_tool_server.received)

    r = client.post(f"/v1/escalations/{escalated['escalation_id']}/approve", json={"note": "ok"})
    assert r.status_code == 202, r.text
    final = _final(client, escalated["request_id"])
    assert final["status"] == "completed"
    assert sum(r.path == "/returns" for r in module_tool_server.received) == returns_before + 1
    # Approving again (the same, unauthenticated caller) is answered the same; nothing re-runs.
    again = client.post(f"/v1/escalations/{escalated['escalation_id']}/approve")
    assert again.status_code == 202
    assert sum(r.path == "/returns" for r in module_tool_server.received) == returns_before + 1
    denied = client.post(f"/v1/escalations/{escalated['escalation_id']}/deny")
    assert denied.status_code == 409
    assert "already approved by anonymous" in denied.json()["message"]


def test_denied_with_the_cli_the_caller_gets_a_clear_refusal(
    client: httpx.Client, postgres_dsn: str, module_tool_server: ToolServer
) -> None:
    escalated = _escalate(client)
    returns_before = sum(r.path == "/returns" for r in module_tool_server.received)
    done = subprocess.run(
        [
            sys.executable, "-m", "pilothouse.runtime.cli", "escalations", "deny",
            escalated["escalation_id"], "--by", "bob", "--reason", "order too old",
            "--dsn", postgres_dsn, "--schema", AUDIT_SCHEMA,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{escalated['escalation_id']}: denied by bob"
    final = _final(client, escalated["request_id"])
    assert final["status"] == "refused"
    assert final["refused"] is True
    assert "declined" in final["answer"]
    assert "order too old" in final["answer"]
    assert sum(r.path == "/returns" for r in module_tool_server.received) == returns_before
