"""The LLM client over real HTTP: answers, the API key from the named variable, and every
failure the mock can inject classified into the right error family."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from pilothouse.runtime import config, devservers, errors, llm
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration

KEY = "sk-pilothouse-test"
MESSAGES = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMProcess]:
    with MockLLMProcess(seed=21, api_key=KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh(server: MockLLMProcess) -> None:
    server.admin.reset(faults=True, scenario=True)


@pytest.fixture
async def client() -> AsyncIterator[llm.LLMClient]:
    c = llm.LLMClient(environ={"TEST_LLM_KEY": KEY, "WRONG_KEY": "sk-wrong"})
    yield c
    await c.aclose()


def model(server: MockLLMProcess, key_env: str | None = "TEST_LLM_KEY") -> config.ModelConfig:
    return config.ModelConfig(
        endpoint=server.url,
        name="mock-llm",
        api_key_env=key_env,
        pricing=config.ModelPricing(input_per_million_tokens=1, output_per_million_tokens=1),
    )


async def test_an_answer_with_usage_and_cost(server: MockLLMProcess, client: llm.LLMClient) -> None:
    completion = await client.chat(model(server), MESSAGES, time_limit=5)
    assert "4" in (completion.content or "")
    assert completion.input_tokens > 0
    assert completion.cost_usd == pytest.approx(
        (completion.input_tokens + completion.output_tokens) / 1_000_000
    )


async def test_a_wrong_or_missing_key_is_rejected(
    server: MockLLMProcess, client: llm.LLMClient
) -> None:
    with pytest.raises(errors.LLMRequestRejected, match="HTTP 401") as info:
        await client.chat(model(server, "WRONG_KEY"), MESSAGES, time_limit=5)
    assert info.value.status == 401
    with pytest.raises(errors.LLMRequestRejected, match="HTTP 401"):
        await client.chat(model(server, None), MESSAGES, time_limit=5)


@pytest.mark.parametrize(
    ("faults", "family", "text"),
    [
        ({"error_rate": 1.0, "error_status": 503}, errors.LLMServerError, "HTTP 503"),
        ({"rate_limit_rate": 1.0, "retry_after": 7}, errors.LLMRateLimited, "Retry-After 7s"),
        ({"malformed_rate": 1.0}, errors.LLMMalformedResponse, "malformed completion"),
        ({"hang_rate": 1.0}, errors.LLMTimeout, "no answer within 0.3s"),
    ],
)
async def test_injected_faults_are_classified(
    server: MockLLMProcess,
    client: llm.LLMClient,
    faults: dict[str, object],
    family: type[errors.LLMError],
    text: str,
) -> None:
    server.admin.set_faults(**faults)
    for _ in range(3):  # the malformed variants differ per call
        with pytest.raises(family, match=text) as info:
            await client.chat(model(server), MESSAGES, time_limit=0.3)
        assert info.value.model == model(server).key
    if family is errors.LLMRateLimited:
        assert isinstance(info.value, errors.LLMRateLimited)
        assert info.value.retry_after == 7


async def test_nothing_listening_is_a_connection_error(client: llm.LLMClient) -> None:
    dead = config.ModelConfig(endpoint=f"http://127.0.0.1:{devservers.free_port()}/v1", name="m")
    with pytest.raises(errors.LLMConnectionError, match="ConnectError"):
        await client.chat(dead, MESSAGES, time_limit=2)
