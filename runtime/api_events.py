"""``GET /v1/requests/{id}/events``: a request's progress as server-sent events, for the native API.

A caller that sent ``POST /v1/requests`` and got 202 can follow the request instead of polling
``GET /v1/requests/{id}``. The stream reads the stored state (any replica may serve it, whichever
worker answers): ``state`` while queued, a ``step`` event as each step starts (relayed from
the worker, :mod:`progress`: ``started``, ``llm_call_started``, ``tool_call_started``), then,
once answered, one ``step`` event per outcome of :func:`chat_completions.step_events` (tool
calls with their outcome, fallback, refusal, escalation) and a last ``result`` event with the
:class:`~pilothouse.runtime.requests.AgentResult`; then the stream ends. ``: keep-alive``
comments keep idle proxies from closing it; after
:data:`api_models.MAX_WAIT_SECONDS` without an answer an ``error`` event ends it (reconnect to
go on waiting). Installed by :func:`pilothouse.runtime.api.create_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import orjson
from fastapi import FastAPI, Path
from fastapi.responses import Response, StreamingResponse

from pilothouse.runtime import (
    api_models,
    api_responses,
    chat_completions,
    envelopes,
    errors,
    progress,
    queue,
    requests,
)

__all__ = ["FIRST_POLL_SECONDS", "KEEPALIVE_SECONDS", "POLL_MAX_SECONDS", "install", "sse_event"]

KEEPALIVE_SECONDS: Final = 10.0
"""Longest silence of the stream (a ``: keep-alive`` comment then)."""
POLL_MAX_SECONDS: Final = 0.25
"""Longest wait for a progress event before the state is read again."""
FIRST_POLL_SECONDS: Final = 0.01
"""First such wait after a step started (then doubled up to :data:`POLL_MAX_SECONDS`)."""
RequestId = Annotated[
    str, Path(pattern=requests.REQUEST_ID_PATTERN, description="The request's id.")
]


def sse_event(name: str, data: bytes) -> bytes:
    """One server-sent event named ``name`` with JSON ``data``."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _doc(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


def install(app: FastAPI, work_queue: queue.WorkQueue) -> None:
    """Add the events route to ``app``."""

    @app.get(
        "/v1/requests/{request_id}/events",
        response_model=None,
        tags=["requests"],
        summary="Follow a request: server-sent events until its result",
        responses={
            200: {
                "description": "text/event-stream: `state` (queued), `step` per step event, "
                "`result` (the AgentResult), or `error`; then the stream ends.",
            },
            404: {"model": api_models.ErrorBody, "description": "Unknown (or expired) id."},
            **api_responses.ERROR_RESPONSES,
        },
    )
    async def request_events(request_id: RequestId) -> Response:
        rid = request_id
        follow = progress.Subscription(work_queue.redis, work_queue.cfg, rid)
        await follow.open()  # before reading the state: no step in between is missed
        try:
            state = await work_queue.state(rid)
        except BaseException:
            await follow.close()
            raise
        if state is None:
            await follow.close()
            return api_responses.error(404, f"no request {rid} (unknown, or its result expired)")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            _closing(follow, _events(work_queue, rid, state, follow)),
            media_type="text/event-stream",
            headers=headers,
        )


async def _closing(
    follow: progress.Subscription, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        async for part in events:
            yield part
    finally:
        await follow.close()


async def _events(
    work_queue: queue.WorkQueue,
    rid: str,
    state: envelopes.RequestState,
    follow: progress.Subscription,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    if state.state == "queued":
        doc = {"request_id": rid, "state": "queued", "accepted_at": state.accepted_at}
        yield sse_event("state", _doc(doc))
    until = loop.time() + api_models.MAX_WAIT_SECONDS
    quiet_since = loop.time()
    current: envelopes.RequestState | None = state
    delay = FIRST_POLL_SECONDS
    while current is not None and current.state != "done":
        if loop.time() >= until:
            message = f"not answered within {api_models.MAX_WAIT_SECONDS:g}s; reconnect to wait on"
            yield sse_event("error", _doc({"error": "timeout", "message": message}))
            return
        event = await follow.next(delay)
        if event is not None:
            yield sse_event("step", _doc(event))
            quiet_since = loop.time()
            delay = FIRST_POLL_SECONDS  # a step started: the answer may be near
            continue
        delay = min(delay * 2, POLL_MAX_SECONDS)
        try:
            current = await work_queue.state(rid)
        except errors.DependencyUnavailable as e:
            yield sse_event("error", _doc({"error": "unavailable", "message": str(e)}))
            return
        if loop.time() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = loop.time()
            yield b": keep-alive\n\n"
    if current is None or current.result_json is None:
        message = f"request {rid} expired before it was answered"
        yield sse_event("error", _doc({"error": "not_found", "message": message}))
        return
    while (late := await follow.next(0.0)) is not None:  # published before the answer
        yield sse_event("step", _doc(late))
    result = current.result()
    assert result is not None
    for event in chat_completions.step_events(result):
        yield sse_event("step", _doc(event))
    yield sse_event("result", current.result_json)
