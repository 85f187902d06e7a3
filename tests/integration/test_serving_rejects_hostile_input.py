"""Malformed and hostile input gets a 4xx that names the problem, never a 5xx: hand-written
cases for what a fuzzer rarely finds (streamed oversized bodies, lone surrogates, nesting
bombs), then the OpenAPI document fuzzed with schemathesis against a ``pilothouse serve``
process (a bounded number of examples per operation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from serving_support import runtime_config, runtime_env

from pilothouse.runtime import testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

MAX_BODY = 4096
MAX_INPUT = 1000


@pytest.fixture(scope="module")
def runtime(
    redis_url: str, postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[testing.RuntimeProcess]:
    # Own mock LLM: this runtime is module-scoped, the shared `llm` fixture per test.
    with MockLLMProcess(seed=4) as llm:
        cfg = runtime_config(
            "hostile-input",
            llm.url,
            server={"maxBodyBytes": MAX_BODY, "maxInputChars": MAX_INPUT},
        )
        workdir: Path = tmp_path_factory.mktemp("hostile")
        with testing.RuntimeProcess(
            cfg, env=runtime_env(redis_url, postgres_dsn), workdir=workdir
        ) as rt:
            yield rt


@pytest.fixture
def client(runtime: testing.RuntimeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runtime.url, timeout=30) as c:
        yield c


def _raw(
    client: httpx.Client, body: bytes, path: str = "/v1/requests", **headers: str
) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 422, "body"),
        (b"null", 422, "body"),
        (b"[1, 2]", 422, "body"),
        (b'"just a string"', 422, "body"),
        (b'{"input": 5}', 422, "body.input"),
        (b'{"input": ""}', 422, "body.input"),
        (b'{"input": "hi", "extra": true}', 422, "body.extra"),
        (b'{"input": "hi", "approved_escalation": "esc-1"}', 422, "body.approved_escalation"),
        (b'{"input": "hi", "request_id": "../../etc/passwd"}', 422, "body.request_id"),
        (b'{"input": "hi", "metadata": {"k": {"nested": 1}}}', 422, "body.metadata.k"),
        (b'{"input": "hi", "timeout_seconds": -1}', 422, "body.timeout_seconds"),
        (b'{"input": "hi", "wait_seconds": 1e400}', 422, "body.wait_seconds"),
        (b'{"input": "\\ud800 lone surrogate"}', 422, "body.input"),
        (b'{"input": "nul \\u0000 inside"}', 422, "NUL"),
        (b'{"input": "hi", "user": "\\udfff"}', 422, "body.user"),
        (b"[" * 2000 + b"]" * 2000, 400, "nested too deeply"),
    ],
)
def test_bad_bodies_get_a_4xx_naming_the_problem(
    client: httpx.Client, body: bytes, status: int, says: str
) -> None:
    r = _raw(client, body)
    assert r.status_code == status, r.text
    doc = r.json()
    assert says in doc["message"], doc
    assert doc["error"] in ("invalid_request",)


def test_a_nesting_bomb_is_rejected_not_crashed_on(client: httpx.Client) -> None:
    bomb = b'{"input": "x", "metadata": ' + b"[" * (MAX_BODY // 2 - 40) + b"]" * 10 + b"}"
    r = _raw(client, bomb[:MAX_BODY])
    assert 400 <= r.status_code < 500, r.text


def test_oversized_bodies_are_413_declared_or_streamed(client: httpx.Client) -> None:
    big = b'{"input": "' + b"a" * MAX_BODY + b'"}'
    r = _raw(client, big)
    assert r.status_code == 413
    assert str(MAX_BODY) in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bound is counted as it streams
        yield b'{"input": "'
        for _ in range(MAX_BODY // 512 + 1):
            yield b"b" * 512
        yield b'"}'

    r = client.post("/v1/requests", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"


def test_input_over_the_limit_is_422_with_the_limit(client: httpx.Client) -> None:
    r = client.post("/v1/requests", json={"input": "x" * (MAX_INPUT + 1)})
    assert r.status_code == 422
    assert f"the limit is {MAX_INPUT}" in r.json()["message"]


def test_other_content_types_are_415(client: httpx.Client) -> None:
    r = client.post(
        "/v1/requests",
        content=b"input=hi",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    assert "application/json" in r.json()["message"]


@pytest.mark.parametrize("query", ["wait=-1", "wait=abc", "wait=1e400", "wait=301", "wait=nan"])
def test_bad_wait_parameters_are_422(client: httpx.Client, query: str) -> None:
    r = client.post(f"/v1/requests?{query}", json={"input": "hi"})
    assert r.status_code == 422, r.text
    assert "query.wait" in r.json()["message"]


@pytest.mark.parametrize(
    "text",
    [
        "مرحبا \u202e gnirts desrever",  # right-to-left override
        "zero\u200bwidth\u200djoiner\ufeff",
        "e\u0301\u0301\u0301 combining marks",
        "\U0001f9d1\u200d\U0001f680 astronaut, \U0001d518\U0001d52b\U0001d526, \U0010fffd",
        "\u0007 bell and \t tab and \r\n",
    ],
)
def test_odd_but_valid_unicode_is_accepted_and_answered(client: httpx.Client, text: str) -> None:
    r = client.post("/v1/requests?wait=10", json={"input": text})
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("completed", "fallback", "refused")


def test_unknown_paths_and_methods_are_4xx(client: httpx.Client) -> None:
    assert client.get("/v1/nothing-here").status_code == 404
    assert client.delete("/v1/requests").status_code == 405
    assert client.get("/v1/requests/%00bad").status_code in (404, 422)
    assert client.get("/v1/requests/" + "a" * 500).status_code == 422


# ------------------------------------------------------------------------------- fuzzing

EXAMPLES_PER_MODE = 150
"""Cases per generation mode (schema-valid, then schema-violating), over all operations."""


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_fuzzed_requests_never_get_a_5xx(
    runtime: testing.RuntimeProcess, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{runtime.url}/openapi.json")
    seen: set[str] = set()

    @hypothesis.given(case=schema.as_strategy(mode))
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=runtime.url, timeout=60)
        seen.add(f"{case.method} {case.operation.path}")
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: "
            f"{response.text[:300]}\n{case.as_curl_command()}"
        )

    fuzz()
    # Every operation was exercised (only those with parameters or a body can be made invalid).
    assert len(seen) == (14 if mode is schemathesis.GenerationMode.POSITIVE else 9), seen
