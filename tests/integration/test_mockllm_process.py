"""The mock LLM launcher: start on a free port, flags at start, scenario files and swaps,
clean stops (also with requests hanging), restarts on the same port, start failures."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilothouse.runtime.mockllm import (
    FaultConfig,
    FaultConfigError,
    InvalidRequestError,
    LaunchError,
    MockLLMProcess,
)
from pilothouse.runtime.mockllm.faults import DIALECT_FIELDS

pytestmark = pytest.mark.integration

QUESTION = {"model": "m", "messages": [{"role": "user", "content": "What is 2+2?"}]}


def test_start_reports_a_free_port_and_stop_frees_it() -> None:
    llm = MockLLMProcess()
    with pytest.raises(LaunchError, match="not running"):
        _ = llm.url
    with llm:
        assert llm.running
        assert llm.url == f"http://127.0.0.1:{llm.port}/v1"
        assert llm.port > 0
        assert httpx.get(f"{llm.base_url}/healthz").json() == {"status": "ok"}
        assert "listening on" in llm.output()
    assert not llm.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{llm.port}/healthz")
    llm.stop()  # idempotent


def test_two_servers_run_side_by_side() -> None:
    with MockLLMProcess() as a, MockLLMProcess() as b:
        assert a.port != b.port
        assert httpx.post(f"{a.url}/chat/completions", json=QUESTION).status_code == 200
        assert httpx.post(f"{b.url}/chat/completions", json=QUESTION).status_code == 200


def _without_dialect(faults: FaultConfig) -> dict[str, Any]:
    """The fault settings proper: strict mode may come from the test environment."""
    return faults.model_dump(exclude=set(DIALECT_FIELDS))


def _faults(llm: MockLLMProcess) -> dict[str, Any]:
    return _without_dialect(FaultConfig.parse(llm.admin.get_faults()))


def test_faults_given_at_start_apply_and_reset_restores_them() -> None:
    start_faults = FaultConfig(error_rate=1.0, error_status=502, models=("primary",))
    with MockLLMProcess(faults=start_faults) as llm:
        primary = {**QUESTION, "model": "primary"}
        assert httpx.post(f"{llm.url}/chat/completions", json=primary).status_code == 502
        assert httpx.post(f"{llm.url}/chat/completions", json=QUESTION).status_code == 200
        assert _faults(llm) == _without_dialect(start_faults)
        llm.admin.clear_faults()
        assert httpx.post(f"{llm.url}/chat/completions", json=primary).status_code == 200
        llm.admin.reset(faults=True)
        assert _faults(llm) == _without_dialect(start_faults)


def test_a_scenario_file_is_loaded_at_start(tmp_path: Path) -> None:
    path = tmp_path / "support.yaml"
    path.write_text(
        "name: support\n"
        "models: [support-model]\n"
        "rules:\n"
        "  - match: 'refund for (?P<item>\\w+)'\n"
        "    content: 'Refund for {item} approved.'\n"
    )
    with MockLLMProcess(scenario=path) as llm:
        assert llm.admin.scenario()["name"] == "support"
        body = {
            "model": "x",
            "messages": [{"role": "user", "content": "A refund for shoes please"}],
        }
        answer = httpx.post(f"{llm.url}/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == "Refund for shoes approved."
        models = httpx.get(f"{llm.url}/models").json()
        assert [m["id"] for m in models["data"]] == ["support-model"]


def test_scenarios_can_be_swapped_as_text_files_or_mappings(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"name": "from-file", "rules": [{"content": "file"}]}')
    with MockLLMProcess() as llm:

        def answer() -> str:
            body = httpx.post(f"{llm.url}/chat/completions", json=QUESTION).json()
            content: str = body["choices"][0]["message"]["content"]
            return content

        assert llm.admin.load_scenario(path)["name"] == "from-file"
        assert answer() == "file"
        llm.admin.load_scenario("name: from-text\nrules:\n  - content: text\n")
        assert answer() == "text"
        llm.admin.load_scenario({"name": "from-dict", "rules": [{"content": "dict"}]})
        assert answer() == "dict"


def test_a_bad_scenario_swap_is_rejected_and_the_old_one_stays() -> None:
    with MockLLMProcess() as llm:
        with pytest.raises(InvalidRequestError, match=r"rules\[1\] \('bad'\).*invalid regex"):
            llm.admin.load_scenario(
                {"rules": [{"content": "ok"}, {"name": "bad", "match": "([", "content": "x"}]}
            )
        assert llm.admin.scenario()["name"] == "default"


def test_a_bad_scenario_file_fails_the_start_naming_file_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("rules:\n  - name: fine\n    content: ok\n  - name: nothing\n    match: x\n")
    llm = MockLLMProcess(scenario=path)
    with pytest.raises(LaunchError) as caught:
        llm.start()
    message = str(caught.value)
    assert "broken.yaml" in message
    assert "rules[1] ('nothing')" in message
    assert "exited with code 2" in message
    assert not llm.running


def test_invalid_start_faults_are_rejected_before_launch() -> None:
    with pytest.raises(FaultConfigError, match="error_rate"):
        MockLLMProcess(faults={"error_rate": 3})


def test_a_server_that_cannot_bind_fails_the_start() -> None:
    with MockLLMProcess() as first:
        second = MockLLMProcess(port=first.port)
        with pytest.raises(LaunchError, match="cannot listen"):
            second.start()


def test_restart_comes_back_on_the_same_port() -> None:
    with MockLLMProcess() as llm:
        port = llm.port
        assert httpx.post(f"{llm.url}/chat/completions", json=QUESTION).status_code == 200
        llm.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=QUESTION)
        llm.start()
        assert llm.port == port
        assert httpx.post(f"{llm.url}/chat/completions", json=QUESTION).status_code == 200
        assert llm.admin.stats()["total"] == 1  # a fresh process


def test_hung_requests_do_not_block_stop() -> None:
    llm = MockLLMProcess(faults={"hang_rate": 1.0}).start()
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.post(f"{llm.url}/chat/completions", json=QUESTION, timeout=60))
        except httpx.HTTPError as e:
            outcome.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        deadline = time.monotonic() + 5
        while llm.admin.stats()["in_flight"] < 1:
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.02)
        # Ended by the SIGTERM, not SIGKILLed when the stop timeout ran out.
        assert llm.stop() in (0, -signal.SIGTERM)
    finally:
        llm.stop()
        caller.join(timeout=10)
    assert not caller.is_alive()
    (result,) = outcome
    # Answered by the server as it stops, not cut off by the shutdown's grace timeout.
    assert isinstance(result, httpx.Response), result
    assert result.status_code == 503
    assert result.json()["error"]["message"] == "The server is shutting down."
