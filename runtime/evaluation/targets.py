"""Targets: where the runner sends an example's messages, and how results come back.

Two kinds, one protocol (:class:`Target`):

* :class:`HttpTarget` talks to a running runtime (``pilothouse serve``) over its API:
  ``POST {url}/agent/process`` with an :class:`~pilothouse.runtime.requests.AgentRequest`
  body (``session_id`` set for the turns of a conversation), answered with an
  :class:`~pilothouse.runtime.requests.AgentResult`. ``--token`` is sent as a bearer token.
* :class:`InProcessTarget` builds the real agent from a runtime config file, in this process:
  the same agent loop, LLM client, tools and policies as a pod, without the HTTP API and the
  queue. It needs the Redis the config names (sessions, breaker and counters live there).

Used by :mod:`runner` and the ``pilothouse eval`` command; each send is one request, and a
failure (connection refused, HTTP 5xx, a body that is not a result) raises
:class:`TargetError`, which fails that example with the reason, never the run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

import httpx
import pydantic

from pilothouse.runtime import errors, requests

__all__ = ["DEFAULT_TIMEOUT_S", "HttpTarget", "InProcessTarget", "Target", "TargetError"]

DEFAULT_TIMEOUT_S = 120.0
"""Longest wait for one answer; the agent's own request deadline is normally shorter."""
_BODY_CHARS_IN_ERRORS = 300


class TargetError(errors.RuntimeFailure):
    """A message could not be answered by the target (the example fails with this reason)."""


class Target(Protocol):
    """Something that answers agent requests."""

    description: str
    """Shown in reports (a URL or a config file)."""

    async def send(self, request: requests.AgentRequest) -> requests.AgentResult:
        """Answer one message; raise :class:`TargetError` when it cannot be answered."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class HttpTarget:
    """A running runtime, reached over its HTTP API."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 32,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise errors.UsageError(f"--url must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.description = self.url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def send(self, request: requests.AgentRequest) -> requests.AgentResult:
        endpoint = f"{self.url}/agent/process"
        body: dict[str, Any] = {"input": request.input, "request_id": request.request_id}
        if request.session_id is not None:
            body["session_id"] = request.session_id
        if request.metadata:
            body["metadata"] = request.metadata
        try:
            response = await self._client.post(endpoint, json=body)
        except httpx.TimeoutException as e:
            raise TargetError(f"no answer from {endpoint} in time ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise TargetError(f"cannot reach {endpoint}: {type(e).__name__}: {e}") from e
        if response.status_code != 200:
            raise TargetError(
                f"{endpoint} answered HTTP {response.status_code}: "
                f"{response.text[:_BODY_CHARS_IN_ERRORS]}"
            )
        try:
            return requests.AgentResult.model_validate_json(response.content)
        except pydantic.ValidationError as e:
            raise TargetError(
                f"{endpoint} answered something that is not an agent result: "
                f"{response.text[:_BODY_CHARS_IN_ERRORS]}"
            ) from e

    async def aclose(self) -> None:
        await self._client.aclose()


class InProcessTarget:
    """The real agent built from a runtime config file, in this process (needs its Redis).

    Wired as a runtime pod wires its workers: the Redis client from ``redis.urlEnv`` (or
    ``redis.url``), the policy engine of the config's policies, the agent loop. Decisions are
    not written to an audit trail.
    """

    def __init__(self, config_path: str | Path, *, environ: dict[str, str] | None = None) -> None:
        from pilothouse.runtime import config

        self.config_path = Path(config_path)
        self.config = config.load_config(self.config_path)
        self.description = f"agent {self.config.agent!r} in-process from {self.config_path}"
        self._environ = environ
        self._redis: Any = None
        self._agent: Any = None
        self._starting = asyncio.Lock()

    async def start(self) -> InProcessTarget:
        """Connect to Redis and build the agent, once (concurrent first sends wait for the one
        build); raise DependencyUnavailable without Redis."""
        async with self._starting:
            if self._agent is None:
                await self._build()
        return self

    async def _build(self) -> None:
        import redis.asyncio as aioredis
        import redis.exceptions

        from pilothouse.runtime import agent
        from pilothouse.runtime.policies import engine

        url = self.config.redis.resolve_url(self._environ)
        client = aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
        try:
            await client.ping()
        except (redis.exceptions.RedisError, OSError) as e:
            await client.aclose()
            raise errors.DependencyUnavailable(
                f"the agent needs Redis ({self.config.redis.url_env}), which does not answer: {e}"
            ) from e
        self._redis = client
        self._agent = agent.build_agent(
            self.config, redis=client, policy_hook=engine.PolicyEngine(self.config, client)
        )

    async def send(self, request: requests.AgentRequest) -> requests.AgentResult:
        if self._agent is None:
            await self.start()
        try:
            outcome = await self._agent.handle(request)
        except errors.PilothouseError as e:
            raise TargetError(f"the agent failed: {type(e).__name__}: {e}") from e
        result: requests.AgentResult = outcome.result
        return result

    async def aclose(self) -> None:
        agent_loop, self._agent = self._agent, None
        client, self._redis = self._redis, None
        if agent_loop is not None:
            await agent_loop.aclose()
        if client is not None:
            await client.aclose()
