"""Fixtures shared by every test tier: real Redis, real PostgreSQL, the mock LLM over HTTP.

Servers start once per test session on free loopback ports and stop at the end, also when
tests fail (the mock LLM: once per test module, so the faults and counters one module sets
never reach another). Set ``PILOTHOUSE_TEST_REDIS_URL`` / ``PILOTHOUSE_TEST_POSTGRES_DSN`` to
use servers you already run (e.g. CI service containers) instead; tests that stop and restart
a server (``redis_server`` / ``postgres_server``) need the local ones and start their own then.

Every mock LLM the tests start is strict (``PILOTHOUSE_MOCK_LLM_STRICT=1``): it refuses what
strict OpenAI-compatible servers refuse (a ``null`` content beside tool calls, a tool result
answering no tool call), so a test whose agent sends such a request fails.

Async hygiene: a test that leaves asyncio tasks running fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import devservers
from pilothouse.runtime.mockllm import command as mockllm_command
from pilothouse.runtime.mockllm.process import MockLLMProcess

os.environ.setdefault(mockllm_command.STRICT_ENV, "1")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[devservers.RedisServer]:
    """A local redis-server this test session controls (can be stopped and restarted)."""
    with devservers.RedisServer() as server:
        yield server.start()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """URL of the Redis the tests use: an existing one from the environment, or a local one."""
    existing = os.environ.get("PILOTHOUSE_TEST_REDIS_URL")
    if existing:
        return existing
    server: devservers.RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[devservers.PostgresServer]:
    """A local PostgreSQL this test session controls (can be stopped and restarted)."""
    with devservers.PostgresServer() as server:
        yield server.start()


@pytest.fixture(scope="session")
def postgres_dsn(request: pytest.FixtureRequest) -> str:
    """DSN of the PostgreSQL the tests use: an existing one from the environment, or a local one."""
    existing = os.environ.get("PILOTHOUSE_TEST_POSTGRES_DSN")
    if existing:
        return existing
    server: devservers.PostgresServer = request.getfixturevalue("postgres_server")
    return server.dsn


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test Redis (bytes replies), closed after the test."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def _mock_llm_process() -> Iterator[MockLLMProcess]:
    with MockLLMProcess() as server:
        yield server


@pytest.fixture
def llm(_mock_llm_process: MockLLMProcess) -> MockLLMProcess:
    """The mock LLM over HTTP (default scenario), one server process per test module; its
    faults, scenario, seed and counters are back to their start values when a test begins."""
    process = _mock_llm_process
    process.admin.reset(faults=True, scenario=True, seed=process.seed)
    return process


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: agents, keys and schemas never collide between tests."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
async def _no_asyncio_pending_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running behind it."""
    before = asyncio.all_tasks()
    yield
    # Let cancelled tasks finish their cleanup before judging.
    for _ in range(3):
        await asyncio.sleep(0)
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    left.discard(asyncio.current_task())  # type: ignore[arg-type]
    if left:
        names = ", ".join(sorted(t.get_name() + ":" + repr(t.get_coro()) for t in left))
        for t in left:
            t.cancel()
        pytest.fail(f"the test left asyncio tasks running: {names}")
