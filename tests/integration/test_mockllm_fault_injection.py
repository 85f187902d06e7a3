"""Fault injection over real HTTP: errors, 429s, hangs, malformed bodies, latency, faults
for some models only, seeded determinism, and the request counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pilothouse.runtime.mockllm import MockLLMProcess, responses

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture
def client(llm: MockLLMProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm.url, timeout=10) as c:
        yield c


def ask(client: httpx.Client, model: str = "mock-llm", **kwargs: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": QUESTION}, **kwargs)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_rate_one_gives_only_errors_with_the_status(
    llm: MockLLMProcess, client: httpx.Client, status: int
) -> None:
    llm.admin.set_faults(error_rate=1.0, error_status=status)
    responses = [ask(client) for _ in range(20)]
    assert {r.status_code for r in responses} == {status}
    error = responses[0].json()["error"]
    assert error["type"] == "server_error"
    assert error["message"]
    assert llm.admin.stats()["by_status"] == {str(status): 20}


def test_rate_limits_carry_retry_after(llm: MockLLMProcess, client: httpx.Client) -> None:
    llm.admin.set_faults(rate_limit_rate=1.0, retry_after=7)
    response = ask(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_hang_outlasts_the_client_timeout_and_the_server_stays_healthy(
    llm: MockLLMProcess, client: httpx.Client
) -> None:
    llm.admin.set_faults(hang_rate=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        ask(client, timeout=httpx.Timeout(5.0, read=0.5))
    assert time.monotonic() - started >= 0.5
    # The server notices the client left and ends the hung handler.
    wait_until(lambda: llm.admin.stats()["in_flight"] == 0)
    assert llm.admin.stats()["by_outcome"] == {"hang": 1}
    assert llm.admin.stats()["by_status"] == {}

    llm.admin.clear_faults()
    response = ask(client)
    assert response.status_code == 200
    assert "4" in response.json()["choices"][0]["message"]["content"]


def test_malformed_bodies_are_not_valid_completions(
    llm: MockLLMProcess, client: httpx.Client
) -> None:
    llm.admin.set_faults(malformed_rate=1.0)
    answers = [ask(client) for _ in range(30)]
    assert {r.status_code for r in answers} == {200}
    assert all(responses.completion_problems(r.content) for r in answers)
    assert len({r.content for r in answers}) > 1  # several kinds of breakage


def test_latency_delays_answers(llm: MockLLMProcess, client: httpx.Client) -> None:
    llm.admin.set_faults(latency_ms=1_000)
    started = time.monotonic()
    assert ask(client).status_code == 200
    assert time.monotonic() - started >= 1.0  # a floor: no load makes a sleep shorter
    assert (llm.admin.stats()["delayed"], llm.admin.stats()["delayed_ms"]) == (1, 1000.0)
    llm.admin.clear_faults()
    assert ask(client).status_code == 200
    # Answered without holding back (checked by what the server did, not by a stopwatch).
    assert (llm.admin.stats()["delayed"], llm.admin.stats()["delayed_ms"]) == (1, 1000.0)
    assert llm.admin.stats()["by_outcome"] == {"ok": 2}


def test_faults_for_one_model_leave_another_healthy(
    llm: MockLLMProcess, client: httpx.Client
) -> None:
    llm.admin.set_faults(error_rate=1.0, error_status=503, models=["primary"])
    primary = [ask(client, "primary").status_code for _ in range(10)]
    fallback = [ask(client, "fallback").status_code for _ in range(10)]
    assert primary == [503] * 10
    assert fallback == [200] * 10
    stats = llm.admin.stats()
    assert stats["by_model"] == {"primary": 10, "fallback": 10}
    assert stats["by_outcome"] == {"error": 10, "ok": 10}


def test_partial_updates_keep_the_other_settings(llm: MockLLMProcess) -> None:
    llm.admin.set_faults(error_rate=0.5, error_status=502)
    updated = llm.admin.update_faults(latency_ms=10)
    assert (updated["error_rate"], updated["error_status"], updated["latency_ms"]) == (0.5, 502, 10)
    assert llm.admin.get_faults() == updated


def test_invalid_fault_settings_are_rejected_with_400(llm: MockLLMProcess) -> None:
    response = httpx.put(f"{llm.base_url}/admin/faults", json={"error_rate": 2})
    assert response.status_code == 400
    assert "error_rate" in response.json()["error"]["message"]
    response = httpx.put(f"{llm.base_url}/admin/faults", json={"hang_rate": 0.7, "error_rate": 0.7})
    assert response.status_code == 400
    assert llm.admin.get_faults()["error_rate"] == 0


def test_the_same_seed_gives_the_same_faults(llm: MockLLMProcess, client: httpx.Client) -> None:
    def statuses() -> list[int]:
        llm.admin.set_faults(error_rate=0.5)
        return [ask(client).status_code for _ in range(40)]

    llm.admin.reset(seed=99)
    first = statuses()
    llm.admin.reset(seed=99)
    second = statuses()
    assert first == second
    assert set(first) == {200, 500}


def test_stats_count_every_request_and_reset_zeroes_them(
    llm: MockLLMProcess, client: httpx.Client
) -> None:
    for _ in range(3):
        assert ask(client, "a").status_code == 200
    assert ask(client, "b").status_code == 200
    assert client.post("/chat/completions", content=b"{").status_code == 400
    assert client.get("/models").status_code == 200
    assert client.get("/nope").status_code == 404
    llm.admin.get_faults()  # admin calls are not counted

    stats = llm.admin.stats()
    assert stats["total"] == 7
    assert stats["by_path"] == {"/v1/chat/completions": 5, "/v1/models": 1, "/v1/nope": 1}
    assert stats["by_model"] == {"a": 3, "b": 1}
    assert stats["by_outcome"] == {"ok": 5, "bad_request": 1, "not_found": 1}
    assert stats["by_status"] == {"200": 5, "400": 1, "404": 1}
    assert stats["by_rule"] == {"arithmetic": 4}

    llm.admin.reset()
    zero = llm.admin.stats()
    assert zero["total"] == 0
    assert zero["by_path"] == {}
    assert zero["by_model"] == {}
    assert zero["by_status"] == {}


def test_admin_and_health_calls_are_not_counted(llm: MockLLMProcess) -> None:
    # So a test can assert that nothing reached the model (e.g. behind an open breaker).
    llm.admin.get_faults()
    llm.admin.scenario()
    llm.admin.update_faults(latency_ms=1)
    httpx.get(f"{llm.base_url}/healthz")
    httpx.get(f"{llm.base_url}/admin/nope")
    llm.admin.stats()
    assert llm.admin.stats()["total"] == 0
