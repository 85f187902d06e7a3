"""Shared pieces of the agent loop's integration tests: a real HTTP tool server and configs.

The tool server is a real ``http.server`` on a loopback port, in a thread, serving the tools
the mock LLM's default scenario calls (``weather_api``, ``initiate_return``) and a few that
misbehave (malformed JSON, a hang, an error status, binary). It records every request it gets,
so tests assert on what the agent actually sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis

from pilothouse.runtime import agent, config, hooks, requests

SLOW_TOOL_SECONDS = 3.0


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.received.append(
            Received(
                self.command,
                parts.path,
                query,
                body,
                {k.lower(): v for k, v in self.headers.items()},
            )
        )
        route = parts.path.rstrip("/")
        if route == "/weather":
            city = query.get("city", "?")
            self._send(200, {"city": city, "forecast": "sunny", "temperature_c": 21})
        elif route == "/returns":
            order = (body or {}).get("order_id", "?") if isinstance(body, dict) else "?"
            self._send(200, {"return_id": f"R-{order}", "status": "initiated"})
        elif route == "/with-context":
            self._send(200, {"ok": True, "context": {"loyalty_tier": "gold"}})
        elif route == "/garbage":
            self._send_raw(200, "application/json", b'{"forecast": "sun')
        elif route == "/binary":
            self._send_raw(200, "application/octet-stream", b"\xff\xfe\x00\x81")
        elif route == "/error":
            self._send_raw(500, "text/plain", b"internal tool failure")
        elif route == "/slow":
            time.sleep(SLOW_TOOL_SECONDS)
            self._send(200, {"late": True})
        else:
            self._send(404, {"error": f"no route {route}"})

    do_GET = _handle
    do_POST = _handle

    def _send(self, status: int, doc: Any) -> None:
        self._send_raw(status, "application/json", json.dumps(doc).encode())

    def _send_raw(self, status: int, content_type: str, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: list[Received]


class ToolServer:
    """A real HTTP server for tools, on a free loopback port."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.received = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def received(self) -> list[Received]:
        return self._server.received

    def __enter__(self) -> ToolServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 1}},
    "required": ["city"],
    "additionalProperties": False,
}
RETURN_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^[0-9]+$"}},
    "required": ["order_id"],
}


def standard_tools(tool_url: str, **overrides: dict[str, Any]) -> tuple[config.ToolConfig, ...]:
    """``weather_api`` (GET) and ``initiate_return`` (POST, sets ``return_initiated``)."""
    weather: dict[str, Any] = {
        "name": "weather_api",
        "description": "Current weather for a city.",
        "url": f"{tool_url}/weather",
        "method": "GET",
        "parameters": WEATHER_SCHEMA,
        "headers": {"x-tool-client": "pilothouse"},
        "timeout_seconds": 2.0,
    }
    returns: dict[str, Any] = {
        "name": "initiate_return",
        "description": "Start the return of an order.",
        "url": f"{tool_url}/returns",
        "method": "POST",
        "parameters": RETURN_SCHEMA,
        "context_on_success": {"return_initiated": True},
        "timeout_seconds": 2.0,
    }
    weather.update(overrides.get("weather_api", {}))
    returns.update(overrides.get("initiate_return", {}))
    return (config.ToolConfig(**weather), config.ToolConfig(**returns))


def agent_config(
    name: str,
    llm_url: str,
    *,
    models: tuple[str, ...] = ("mock-llm",),
    tools: tuple[config.ToolConfig, ...] = (),
    attempts: int = 3,
    initial_backoff: float = 0.01,
    max_backoff: float = 0.05,
    failure_threshold: int = 5,
    window: float = 60.0,
    recovery: float = 60.0,
    request_timeout: float = 10.0,
    model_timeout: float = 2.0,
    **extra: Any,
) -> config.RuntimeConfig:
    """A runtime config against the mock LLM with small, fast reliability settings."""
    model_list = [
        config.ModelConfig(
            endpoint=llm_url,
            name=m,
            timeout_seconds=model_timeout,
            pricing=config.ModelPricing(
                input_per_million_tokens=0.15, output_per_million_tokens=0.6
            ),
        )
        for m in models
    ]
    return config.RuntimeConfig(
        agent=name,
        system_prompt="You are a helpful customer support agent.",
        model=model_list[0],
        fallback_models=tuple(model_list[1:]),
        tools=tools,
        reliability=config.ReliabilityConfig(
            retry=config.RetryConfig(
                attempts=attempts,
                initial_backoff_seconds=initial_backoff,
                max_backoff_seconds=max_backoff,
            ),
            circuit_breaker=config.CircuitBreakerConfig(
                failure_threshold=failure_threshold,
                window_seconds=window,
                recovery_timeout_seconds=recovery,
            ),
            request_timeout_seconds=request_timeout,
        ),
        **extra,
    )


async def answer(
    cfg: config.RuntimeConfig,
    redis_client: aioredis.Redis,
    text: str,
    *,
    policy_hook: hooks.PolicyHook | None = None,
) -> agent.AgentOutcome:
    """Build the agent of ``cfg``, answer one request with it, close it."""
    async with agent.build_agent(cfg, redis=redis_client, policy_hook=policy_hook) as a:
        return await a.handle(requests.AgentRequest(input=text))


class ShiftedClock:
    """The real clock plus an offset a test moves forward (e.g. past a recovery timeout)
    instead of sleeping. Shared by agents that must agree on time, like replicas do."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset
