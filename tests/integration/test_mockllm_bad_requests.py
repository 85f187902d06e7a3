"""Bad requests to the mock LLM get a 4xx in OpenAI's error shape, naming the problem."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pilothouse.runtime.mockllm import MockLLMProcess

pytestmark = pytest.mark.integration

USER = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def llm() -> Iterator[MockLLMProcess]:
    with MockLLMProcess() as server:
        yield server


@pytest.fixture
def client(llm: MockLLMProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm.url, timeout=10) as c:
        yield c


def assert_error(
    response: httpx.Response, status: int, *, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if status == 400:
        assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return error


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions",
        content=b'{"model": "m", "messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_error(response, 400)
    assert error["code"] == "invalid_json"
    assert "JSON" in error["message"]


def test_an_empty_body_is_a_400(client: httpx.Client) -> None:
    assert_error(client.post("/chat/completions"), 400)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "m"}, "messages", "Missing required parameter"),
        ({"model": "m", "messages": []}, "messages", "empty array"),
        ({"model": "m", "messages": "hi"}, "messages", "expected an array"),
        ({"messages": [USER]}, "model", "Missing required parameter"),
        ({"model": ["m"], "messages": [USER]}, "model", "expected a string"),
        (
            {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "wizard",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": 42}]},
            "messages[0].content",
            "expected",
        ),
        (
            {"model": "m", "messages": [USER, {"role": "tool", "content": "72F"}]},
            "messages[1].tool_call_id",
            "tool_call_id",
        ),
        (
            {"model": "m", "messages": [USER], "temperature": "warm"},
            "temperature",
            "expected a number",
        ),
        ({"model": "m", "messages": [USER], "max_tokens": -5}, "max_tokens", "minimum"),
        ({"model": "m", "messages": [USER], "stream": "true"}, "stream", "expected a boolean"),
        (
            {"model": "m", "messages": [USER], "tools": [{"type": "retrieval"}]},
            "tools[0].type",
            "retrieval",
        ),
    ],
)
def test_invalid_requests_name_the_problem(
    client: httpx.Client, body: dict[str, Any], param: str, words: str
) -> None:
    error = assert_error(client.post("/chat/completions", json=body), 400, param=param)
    assert words in error["message"]


def test_unknown_paths_and_methods_answer_in_the_same_shape(client: httpx.Client) -> None:
    assert assert_error(client.get("/embeddings"), 404)["code"] == "unknown_url"
    assert assert_error(client.get("/chat/completions"), 405)["code"] == "method_not_allowed"


def test_bad_input_never_breaks_the_server(client: httpx.Client, llm: MockLLMProcess) -> None:
    for junk in (b"\xff\xfe", b"null", b"[]", b'"text"', b"{" * 10_000):
        assert client.post("/chat/completions", content=junk).status_code == 400
    ok = client.post("/chat/completions", json={"model": "m", "messages": [USER]})
    assert ok.status_code == 200
    assert llm.running


def test_an_api_key_is_required_when_configured() -> None:
    with MockLLMProcess(api_key="sk-test-123") as llm:
        body = {"model": "m", "messages": [USER]}
        missing = httpx.post(f"{llm.url}/chat/completions", json=body)
        assert assert_error(missing, 401)["code"] == "invalid_api_key"
        wrong = httpx.post(
            f"{llm.url}/chat/completions", json=body, headers={"authorization": "Bearer nope"}
        )
        assert_error(wrong, 401)
        assert_error(httpx.get(f"{llm.url}/models"), 401)
        right = httpx.post(
            f"{llm.url}/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk-test-123"},
        )
        assert right.status_code == 200
        assert llm.admin.stats()["by_outcome"] == {"unauthorized": 3, "ok": 1}
