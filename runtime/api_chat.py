"""OpenAI-compatible routes of an agent's API: ``POST /v1/chat/completions``, ``GET /v1/models``.

So that the official ``openai`` client, LiteLLM and LangChain can call an agent as a model. A
chat completion is a request like any other: it goes through the same ``submit`` as
``POST /v1/requests`` (the same queue and its bound, the same workers, policies, audit trail
and request-id idempotency); only the dialect differs (:mod:`chat_completions` translates).

* The request id comes from the ``Idempotency-Key`` or ``X-Request-Id`` header (generated when
  absent; always returned in ``X-Request-Id``); ``X-Session-Id`` and ``X-Tenant-Id`` set the
  session and tenant.
* Without ``stream``: wait for the answer like ``POST /agent/process`` and return a
  ``chat.completion``; 504 (``Location`` to poll) when it takes longer.
* A request a ``rateLimit`` policy refused is 429 ``rate_limit_exceeded`` with ``Retry-After``
  (an error event when streaming), as a rate-limited model answers.
* With ``stream: true``: the request is enqueued first (so a full queue is still a 429), then
  server-sent events: the role chunk, the steps as they start (:mod:`progress`), ``: keep-alive``
  comments in silences, then the outcome events and the answer as content deltas once the
  answer is stored, ``data: [DONE]``.

:class:`OpenAIErrors` rewrites every error answer under ``/v1/chat/`` and ``/v1/models`` (the
edge's 401/413/415 and the validation errors included) into OpenAI's error shape; a 422 becomes
400, as OpenAI answers a body it cannot take. Wired by :func:`pilothouse.runtime.api.create_app`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Header, Request
from fastapi.responses import Response, StreamingResponse

from pilothouse.runtime import (
    api_models,
    api_responses,
    chat_completions,
    config,
    errors,
    progress,
    requests,
    workers,
)

__all__ = [
    "FIRST_POLL_SECONDS",
    "KEEPALIVE_SECONDS",
    "OPENAI_PREFIXES",
    "POLL_SECONDS",
    "OpenAIErrors",
    "Submit",
    "install",
]

KEEPALIVE_SECONDS: Final = 10.0
"""Longest silence of a stream while the agent works (a ``: keep-alive`` comment then)."""
POLL_SECONDS: Final = 0.25
"""Longest wait for a progress event before the stream reads the request's state again."""
FIRST_POLL_SECONDS: Final = 0.01
"""First such wait after a step started (then doubled up to :data:`POLL_SECONDS`)."""
OPENAI_PREFIXES: Final = ("/v1/chat/", "/v1/models")
"""Paths whose errors are in OpenAI's shape."""
_WAIT_MARGIN_SECONDS: Final = 5.0
_REQUEST_ID: Final = re.compile(requests.REQUEST_ID_PATTERN)

Submit = Callable[[Request, requests.AgentRequest, float], Awaitable[Response]]
"""Enqueue a request and wait up to S seconds: 200 with the result JSON, 202, or 429."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _error(
    status: int, message: str, *, code: str, param: str | None = None, **headers: str
) -> Response:
    body = chat_completions.error_body(status, message, code=code, param=param)
    return api_responses.json_response(status, body, headers or None)


def _sse(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def install(app: FastAPI, cfg: config.RuntimeConfig, submit: Submit, redis: aioredis.Redis) -> None:
    """Add the chat-completions and models routes to ``app`` (``redis`` for the progress of
    streamed requests)."""
    agent = cfg.agent

    @app.get("/v1/models", response_model=None, tags=["openai"], summary="The agent, as a model")
    async def list_models() -> Response:
        return api_responses.json_response(200, chat_completions.models_list(agent))

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        tags=["openai"],
        summary="Call the agent as an OpenAI chat model",
        responses={
            200: {
                "description": "A chat.completion, or server-sent chat.completion.chunk "
                "events ending with [DONE] when stream is true."
            },
            400: {"description": "The body is not a conversation the agent can take."},
            404: {"description": "model is not this agent's name."},
            429: {"description": "Queue full; see Retry-After."},
            504: {"description": "No answer in time; poll Location."},
        },
    )
    async def chat_completion(
        http: Request,
        body: chat_completions.ChatCompletionBody,
        idempotency_key: Annotated[str | None, Header()] = None,
        x_request_id: Annotated[str | None, Header()] = None,
        x_session_id: Annotated[str | None, Header()] = None,
        x_tenant_id: Annotated[str | None, Header(max_length=256)] = None,
    ) -> Response:
        if body.model != agent:
            message = f"the model {body.model!r} does not exist here; this agent is {agent!r}"
            return _error(404, message, code="model_not_found", param="model")
        named = idempotency_key or x_request_id
        for header, value in (
            ("Idempotency-Key" if idempotency_key else "X-Request-Id", named),
            ("X-Session-Id", x_session_id),
        ):
            if value is not None and not _REQUEST_ID.match(value):
                message = (
                    f"the {header} header must match {requests.REQUEST_ID_PATTERN} "
                    "(1-128 letters, digits, '.', '_', ':', '-')"
                )
                return _error(400, message, code="invalid_request", param=header)
        try:
            request = chat_completions.to_request(
                body,
                request_id=named or requests.new_request_id(),
                session_id=x_session_id,
                tenant=None if x_tenant_id is None else api_models.check_text(x_tenant_id),
                max_input_chars=cfg.server.max_input_chars,
            )
        except (chat_completions.ChatInputError, ValueError) as e:
            param = getattr(e, "param", None)
            return _error(400, str(e), code="invalid_request", param=param)
        deadline = request.timeout_seconds or cfg.reliability.request_timeout_seconds
        within = min(
            deadline + workers.DEADLINE_GRACE_SECONDS + _WAIT_MARGIN_SECONDS,
            api_models.MAX_WAIT_SECONDS,
        )
        rid = request.request_id
        ids = {"X-Request-Id": rid}
        created = int(time.time())
        if body.stream:
            follow = progress.Subscription(redis, cfg, rid)
            await follow.open()  # before enqueueing: no early step is missed
            try:
                first = await submit(http, request, 0.0)
            except BaseException:
                await follow.close()
                raise
            if first.status_code not in (200, 202):
                await follow.close()
                return _translated(first, ids)
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            stream = _stream(
                _Streamed(submit, http, request, follow, agent, created, within),
                first,
                include_usage,
            )
            headers = {**ids, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
        response = await submit(http, request, within)
        if response.status_code == 200:
            result = requests.AgentResult.model_validate_json(bytes(response.body))
            limited = _rate_limited(result, ids)
            if limited is not None:
                return limited
            return api_responses.json_response(
                200, chat_completions.completion(result, created=created), ids
            )
        if response.status_code == 202:
            message = f"no answer within {within:g}s; read it later at /v1/requests/{rid}"
            # The client may retry only when it named the request: then a retry waits for the
            # same request instead of sending the agent the conversation a second time.
            retry = "true" if named else "false"
            return _error(
                504,
                message,
                code="timeout",
                Location=f"/v1/requests/{rid}",
                **ids,
                **{"x-should-retry": retry},
            )
        return _translated(response, ids)


def _rate_limited(result: requests.AgentResult, headers: dict[str, str]) -> Response | None:
    """429 with ``Retry-After`` when a rate limit policy refused the request, so that clients
    back off and retry as they do with a model's rate limit; None otherwise."""
    if result.status is not requests.ResultStatus.REFUSED or result.retry_after_seconds is None:
        return None
    message = result.refusal_reason or f"rate limited by policy {result.policy}"
    return _error(
        429,
        message,
        code="rate_limit_exceeded",
        **headers,
        **{"Retry-After": str(max(1, math.ceil(result.retry_after_seconds)))},
    )


def _translated(response: Response, headers: dict[str, str]) -> Response:
    """A native error answer of ``submit`` (e.g. 429 queue full), in OpenAI's shape."""
    extra = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
    body = _openai_body(response.status_code, bytes(response.body))
    return api_responses.json_response(response.status_code, body, {**headers, **extra})


@dataclass(frozen=True, slots=True)
class _Streamed:
    """What a stream needs: the request, how to read its state, its progress subscription."""

    submit: Submit
    http: Request
    request: requests.AgentRequest
    follow: progress.Subscription
    agent: str
    created: int
    within: float


async def _stream(s: _Streamed, first: Response, include_usage: bool) -> AsyncIterator[bytes]:
    try:
        async for part in _stream_parts(s, first, include_usage):
            yield part
    finally:
        await s.follow.close()


async def _stream_parts(s: _Streamed, first: Response, include_usage: bool) -> AsyncIterator[bytes]:
    rid, agent, created = s.request.request_id, s.agent, s.created
    yield _sse(chat_completions.first_chunk(rid, agent, created=created))
    until = time.monotonic() + s.within
    quiet_since = time.monotonic()
    response = first
    delay = FIRST_POLL_SECONDS
    try:
        while response.status_code == 202:
            now = time.monotonic()
            if now >= until:
                message = f"no answer within {s.within:g}s; read it later at /v1/requests/{rid}"
                yield _sse(chat_completions.error_body(504, message, code="timeout"))
                return
            event = await s.follow.next(min(delay, until - now))
            if event is not None:
                yield _sse(chat_completions.event_chunk(rid, agent, event, created=created))
                quiet_since = time.monotonic()
                delay = FIRST_POLL_SECONDS  # a step started: the answer may be near
                continue
            delay = min(delay * 2, POLL_SECONDS)
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            response = await s.submit(s.http, s.request, 0.0)
    except errors.DependencyUnavailable as e:
        yield _sse(chat_completions.error_body(503, str(e), code="unavailable"))
        return
    while (event := await s.follow.next(0.0)) is not None:  # published before the answer
        yield _sse(chat_completions.event_chunk(rid, agent, event, created=created))
    if response.status_code != 200:
        yield _sse(_openai_body(response.status_code, bytes(response.body)))
        return
    result = requests.AgentResult.model_validate_json(bytes(response.body))
    if result.status is requests.ResultStatus.REFUSED and result.retry_after_seconds is not None:
        message = result.refusal_reason or f"rate limited by policy {result.policy}"
        yield _sse(chat_completions.error_body(429, message, code="rate_limit_exceeded"))
        return
    for chunk in chat_completions.chunks(result, created=created, include_usage=include_usage):
        yield _sse(chunk)
    yield b"data: [DONE]\n\n"


def _openai_body(status: int, body: bytes) -> bytes:
    """A native error body (``{"error": code, "message", "detail"}``) in OpenAI's shape; a body
    in that shape already is kept."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return body
    if not isinstance(doc, dict):
        return chat_completions.error_body(status, body.decode(errors="replace"), code="error")
    code = str(doc.get("error") or "error")
    message = str(doc.get("message") or code)
    param = None
    detail = doc.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(p) for p in detail[0].get("loc", []) if p != "body"]
        param = ".".join(loc) or None
    return chat_completions.error_body(status, message, code=code, param=param)


class OpenAIErrors:
    """ASGI middleware: error answers under :data:`OPENAI_PREFIXES` in OpenAI's shape (422 as
    400). Other paths, and every successful answer (streams too), pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(OPENAI_PREFIXES):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = 400 if start["status"] == 422 else int(start["status"])
            body = _openai_body(status, b"".join(parts))
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)
