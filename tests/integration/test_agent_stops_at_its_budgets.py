"""A request is bounded by its token budget (maxRequestTokens) as well as by maxSteps and its
deadline: once the budget is used the loop stops before the next LLM call, cleanly, saying why."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from agent_support import ToolServer, agent_config, answer, standard_tools

from pilothouse.runtime import requests
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


async def test_the_token_budget_stops_the_loop_before_the_next_call(
    llm: MockLLMProcess, tool_server: ToolServer, redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = agent_config(
        unique_name, llm.url, tools=standard_tools(tool_server.url), max_request_tokens=10
    )
    before = llm.admin.stats()["total"]
    outcome = await answer(cfg, redis_client, "What's the weather in Tokyo?")
    result = outcome.result
    assert result.status is requests.ResultStatus.FAILED
    assert result.fallback_reason == "token_budget"
    assert result.answer == cfg.incomplete_response
    assert result.steps == 1
    assert result.input_tokens + result.output_tokens >= 10
    assert llm.admin.stats()["total"] - before == 1  # the tool ran, the second call did not
    assert [r.path for r in tool_server.received] == ["/weather"]
    last = outcome.decisions[-1]
    assert (last.action, last.outcome) == ("stopped", "error")
    assert (last.error or "").startswith("token_budget: ")


async def test_a_budget_large_enough_lets_the_request_finish(
    llm: MockLLMProcess, tool_server: ToolServer, redis_client: aioredis.Redis, unique_name: str
) -> None:
    cfg = agent_config(
        unique_name, llm.url, tools=standard_tools(tool_server.url), max_request_tokens=100_000
    )
    outcome = await answer(cfg, redis_client, "What's the weather in Tokyo?")
    assert outcome.result.status is requests.ResultStatus.COMPLETED
    assert outcome.result.steps == 2
