"""The real Redis and PostgreSQL the suite runs against answer, and survive a restart.

Every other integration test relies on these fixtures; these tests prove the servers are the
real thing (a round trip through the real client) and that stop/start keeps port and data,
which the failure-injection tests depend on.
"""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from pilothouse.runtime import devservers


async def test_redis_answers_a_real_client(redis_url: str, unique_name: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await client.set(unique_name, "value", ex=60)
        assert await client.get(unique_name) == b"value"
        info = await client.info("server")
        assert str(info["redis_version"]).split(".")[0].isdigit()
    finally:
        await client.aclose()


async def test_postgres_answers_a_real_client(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        version = await conn.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
        assert await conn.fetchval("SELECT current_database()") == "pilothouse"
    finally:
        await conn.close()


async def test_redis_can_be_taken_away_and_brought_back() -> None:
    with devservers.RedisServer() as server:
        server.start()
        client = aioredis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            assert await client.ping()
            server.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.ping()
            server.start()
            assert await client.ping()
        finally:
            await client.aclose()


async def test_postgres_keeps_data_across_restart() -> None:
    with devservers.PostgresServer() as server:
        server.start()
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
        server.stop()
        with pytest.raises((OSError, asyncpg.PostgresError)):
            await asyncpg.connect(server.dsn, timeout=2)
        server.start()
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 42
        finally:
            await conn.close()
