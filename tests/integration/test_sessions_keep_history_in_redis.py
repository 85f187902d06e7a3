"""The session store against real Redis: one round trip to load, one MULTI to save, history
trimmed to maxMessages without ever starting inside a tool exchange, a TTL on both keys."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pilothouse.runtime import config, conversations, errors, sessions

pytestmark = pytest.mark.integration


def store(client: aioredis.Redis, agent: str, **settings: int) -> sessions.SessionStore:
    return sessions.SessionStore(
        client,
        config.SessionConfig(**settings),
        key_prefix="pilothouse",
        namespace="shop",
        agent=agent,
    )


def turn(n: int, *, tool: bool = False) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = [{"role": "user", "content": f"question {n}"}]
    if tool:
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{n}",
                        "type": "function",
                        "function": {"name": "weather_api", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"c{n}", "content": "{}"},
        ]
    return [*messages, {"role": "assistant", "content": f"answer {n}"}]


async def test_an_unknown_session_is_empty(redis_client: aioredis.Redis, unique_name: str) -> None:
    session = await store(redis_client, unique_name).load("nobody")
    assert session == sessions.Session(id="nobody")


async def test_turns_and_context_round_trip_with_a_ttl(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    s = store(redis_client, unique_name, ttl_seconds=120)
    await s.save("s1", turn(1), {"a": 1})
    await s.save("s1", turn(2, tool=True), {"a": 1, "return_initiated": True})
    loaded = await s.load("s1")
    # Stored normalised: the null content beside the tool call is kept as "", which every
    # server reads.
    assert list(loaded.messages) == conversations.normalise_messages(turn(1) + turn(2, tool=True))
    assert loaded.messages[3]["content"] == ""
    assert loaded.context == {"a": 1, "return_initiated": True}
    messages_key, context_key = s.keys("s1")
    assert messages_key == f"pilothouse:session:{{shop/{unique_name}/s1}}:messages"
    for key in (messages_key, context_key):
        assert 0 < await redis_client.ttl(key) <= 120


async def test_history_is_trimmed_and_never_starts_inside_a_tool_exchange(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    s = store(redis_client, unique_name, max_messages=5)
    await s.save("s1", turn(1), {})
    await s.save("s1", turn(2, tool=True), {})  # 4 messages: user, tool call, tool, answer
    await s.save("s1", turn(3), {})
    messages_key, _ = s.keys("s1")
    assert await redis_client.llen(messages_key) == 5
    loaded = await s.load("s1")
    # The last five start with the tool exchange of turn 2; the history starts at turn 3.
    assert list(loaded.messages) == turn(3)


async def test_sessions_are_separate_per_agent(
    redis_client: aioredis.Redis, unique_name: str
) -> None:
    await store(redis_client, unique_name).save("s1", turn(1), {"who": "a"})
    other = await store(redis_client, unique_name + "-other").load("s1")
    assert other.messages == ()
    assert other.context == {}


async def test_an_unreachable_redis_is_a_dependency_error(unique_name: str) -> None:
    from pilothouse.runtime import devservers

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{devservers.free_port()}/0")
    try:
        with pytest.raises(errors.DependencyUnavailable, match="session s1: Redis"):
            await store(client, unique_name).load("s1")
        with pytest.raises(errors.DependencyUnavailable):
            await store(client, unique_name).save("s1", turn(1), {})
    finally:
        await client.aclose()
