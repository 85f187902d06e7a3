"""What the deletion of an agent removes from Redis, and when it stops waiting for Redis."""

from __future__ import annotations

from fnmatch import fnmatchcase

from pilothouse.operator import cleanups
from pilothouse.runtime import queue


def test_the_patterns_cover_the_agent_and_no_neighbour() -> None:
    patterns = queue.agent_key_patterns("p", "ns", "a")

    def covered(key: str) -> bool:
        return any(fnmatchcase(key, pattern) for pattern in patterns)

    for key in ("p:ns:a", "p:ns:a:requests", "p:breaker:ns/a:m0", "p:session:{ns/a/s1}:m",
                "p:{ns/a}:spend"):  # fmt: skip
        assert covered(key), key
    for key in ("p:ns:ab", "p:ns:ab:requests", "p:breaker:ns/ab:m0", "p:session:{ns/ab/s1}:m",
                "p:{ns/ab}:spend", "p:other:a:requests", "q:ns:a:requests"):  # fmt: skip
        assert not covered(key), key


def test_an_unreachable_redis_is_retried_until_the_timeout() -> None:
    assert cleanups.decide(0.0, 60.0) == "retry"
    assert cleanups.decide(59.9, 60.0) == "retry"
    assert cleanups.decide(60.0, 60.0) == "give-up"
    assert cleanups.decide(0.0, 0.0) == "give-up"  # a timeout of 0: never wait
