"""At start the runtime lists each endpoint's models (``GET /models``) and says when the
configured model is not offered: a log warning and ``pilothouse_llm_model_offered`` 0."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from pilothouse.runtime import config, llm, modelchecks
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


def _offered(agent: str, model: config.ModelConfig) -> float | None:
    return REGISTRY.get_sample_value(
        "pilothouse_llm_model_offered", {"agent": agent, "model": model.key}
    )


async def test_an_offered_and_a_misspelt_model(
    llm: MockLLMProcess, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = config.ModelConfig(endpoint=llm.url, name="mock-llm")
    typo = config.ModelConfig(endpoint=llm.url, name="mock-lmm")
    client = _client()
    try:
        with caplog.at_level(logging.WARNING, logger="pilothouse.runtime.modelchecks"):
            checks = await modelchecks.check_models(client, unique_name, [good, typo])
    finally:
        await client.aclose()

    assert [c.verdict for c in checks] == ["offered", "not_offered"]
    assert _offered(unique_name, good) == 1
    assert _offered(unique_name, typo) == 0
    assert "model mock-lmm is not offered" in caplog.text
    assert llm.admin.stats()["by_path"] == {"/v1/models": 2}


async def test_a_server_that_cannot_list_leaves_the_metric_unset(unique_name: str) -> None:
    nowhere = config.ModelConfig(endpoint="http://127.0.0.1:9/v1", name="m")
    client = _client()
    try:
        checks = await modelchecks.check_models(client, unique_name, [nowhere])
    finally:
        await client.aclose()

    assert checks[0].verdict == "unknown"
    assert "GET /models" in checks[0].detail
    assert _offered(unique_name, nowhere) is None


def _client() -> llm.LLMClient:
    return llm.LLMClient()
