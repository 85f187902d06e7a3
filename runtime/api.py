"""The runtime's HTTP API: FastAPI routes over the work queue, the audit history and approvals.

:func:`create_app` builds the app from :class:`Services` (wired by
:mod:`pilothouse.runtime.serving`); uvicorn serves it. Routes:

* ``POST /v1/requests``: validate, enqueue, answer 202 with the request id; with ``?wait=S`` (or
  ``wait_seconds`` in the body) wait up to S seconds and answer 200 with the result if it came.
* ``GET /v1/requests/{id}``: state and result, from any replica. ``GET .../decisions``: the
  decision history from the audit store. ``GET .../events`` (:mod:`api_events`): its progress
  as server-sent events until the result. ``DELETE /v1/requests/{id}``
  (:mod:`api_cancellations`): cancel it; it stops before its next step.
* ``POST /agent/process``: the original write-up's synchronous call (enqueue and wait).
* ``POST /v1/chat/completions``, ``GET /v1/models`` (:mod:`api_chat`): the agent as an OpenAI
  chat model, through the same ``submit`` as ``POST /v1/requests``.
* ``GET /v1/escalations``, ``POST /v1/escalations/{id}/approve|deny``
  (:mod:`api_escalations`): approval re-enqueues the request with ``approved_escalation`` set,
  so a worker resumes it.
* ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``.

Who may call what (:mod:`identities`): sending a request needs ``submit``; naming an end user
(``user``) other than oneself needs ``delegate`` (without it the end user is the caller, so
per-user limits key on the authenticated identity); a request's state, result and decisions are
readable by the identity that sent it and by those with ``read``; escalations need ``approve``.
Every request carries its ``caller``, which the result and the audit trail record.

Every error is a JSON :class:`api_models.ErrorBody` naming the problem: 400 invalid JSON, 401,
403, 404, 409, 413, 415, 422 (wrong types, unknown fields, input too long), 429 with ``Retry-After``
when the queue is full, 503 when Redis or PostgreSQL is away. Client input never causes a 500.
The body limit, authentication, metrics and the server span are the :mod:`edge` middleware's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Final, Protocol

import orjson
import prometheus_client
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette import exceptions as starlette_exceptions

from pilothouse.runtime import (
    api_cancellations,
    api_chat,
    api_escalations,
    api_events,
    api_models,
    api_responses,
    cancellations,
    config,
    edge,
    envelopes,
    errors,
    identities,
    metrics,
    probes,
    queue,
    replies,
    requests,
    telemetry,
    workers,
)

__all__ = [
    "HistoryReader",
    "Services",
    "create_app",
    "no_answer_message",
    "sync_wait_seconds",
]

RequestId = Annotated[
    str, Path(pattern=requests.REQUEST_ID_PATTERN, description="The request's id.")
]
SYNC_WAIT_MARGIN_SECONDS: Final = 5.0
"""``POST /agent/process`` waits the request's deadline plus this (queueing, storing)."""


def sync_wait_seconds(deadline: float) -> float:
    """How long ``POST /agent/process`` waits for a request with this deadline (capped)."""
    within = deadline + workers.DEADLINE_GRACE_SECONDS + SYNC_WAIT_MARGIN_SECONDS
    return min(within, api_models.MAX_WAIT_SECONDS)


def no_answer_message(request_id: str, waited: float) -> str:
    """The 504 of ``POST /agent/process``: the wait it really made, and where the answer will be."""
    return f"no answer within {waited:g}s; read it later at /v1/requests/{request_id}"


class HistoryReader(Protocol):
    """Reads a request's decision records, JSON-ready, from the audit store (step order)."""

    async def __call__(self, request_id: str) -> list[dict[str, Any]]: ...


@dataclass
class Services:
    """What the routes use. A process in the ``worker`` role has only ``health``."""

    cfg: config.RuntimeConfig
    health: probes.Health
    work_queue: queue.WorkQueue | None = None
    waiter: replies.ResultWaiter | None = None
    history: HistoryReader | None = None
    escalations: api_escalations.EscalationDesk | None = None
    authenticator: identities.Authenticator = identities.NO_AUTHENTICATION
    cancellations: cancellations.Cancellations | None = None


def create_app(services: Services) -> FastAPI:
    """The FastAPI app (wrapped in the :class:`edge.Edge` middleware) for ``services``."""
    cfg = services.cfg
    app = FastAPI(
        title=f"Pilothouse agent {cfg.agent}",
        version="v1",
        description="Send requests to the agent, read their results and decision history, "
        "approve escalated actions.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        # The edge middleware makes the server span and the Prometheus metrics; FastAPI's own
        # telemetry would make a second server span and per-dependency spans for every call.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    _install_error_handlers(app)
    if services.work_queue is not None:
        _install_request_routes(app, services)
        api_escalations.install(app, lambda: services.escalations, services.authenticator)
    _install_probes(app, services)
    _install_openapi(app, services)
    app.add_middleware(
        edge.Edge,
        max_body_bytes=cfg.server.max_body_bytes,
        authenticator=services.authenticator,
    )
    app.add_middleware(api_chat.OpenAIErrors)  # outside the edge: its 401/413/415 too
    return app


# ------------------------------------------------------------------------------- errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = list(exc.errors())
        if any(p.get("type") == "json_invalid" for p in problems):
            p = next(p for p in problems if p.get("type") == "json_invalid")
            why = (p.get("ctx") or {}).get("error", "invalid JSON")
            pos = p["loc"][-1] if p.get("loc") else "?"
            message = f"the body is not valid JSON: {why} (at character {pos})"
            return api_responses.error(400, message)
        detail = [
            {"loc": list(p.get("loc", ())), "msg": p.get("msg", ""), "type": p.get("type", "")}
            for p in problems
        ]
        message = "; ".join(f"{api_responses.where(d['loc'])}: {d['msg']}" for d in detail)
        return api_responses.error(422, message or "invalid request", detail=detail)

    @app.exception_handler(starlette_exceptions.HTTPException)
    async def http_error(_: Request, exc: starlette_exceptions.HTTPException) -> Response:
        message = str(exc.detail)
        if isinstance(exc.__cause__, RecursionError):
            message = "the body is not valid JSON: nested too deeply"
        return api_responses.error(exc.status_code, message, **(exc.headers or {}))

    @app.exception_handler(errors.DependencyUnavailable)
    async def unavailable(_: Request, exc: errors.DependencyUnavailable) -> Response:
        return api_responses.error(503, str(exc), **{"Retry-After": "1"})


# ------------------------------------------------------------------------------ requests


def _install_request_routes(app: FastAPI, services: Services) -> None:
    cfg = services.cfg
    q = services.work_queue
    waiter = services.waiter
    assert q is not None
    auth = services.authenticator
    rejected = metrics.QUEUE_REJECTED.labels(agent=cfg.agent)
    backlog_gauge = metrics.QUEUE_BACKLOG.labels(agent=cfg.agent)

    def forbidden(message: str) -> starlette_exceptions.HTTPException:
        return starlette_exceptions.HTTPException(403, message)

    async def submitted_request(
        http: Request, body: api_models.RequestBody
    ) -> requests.AgentRequest:
        """The request to enqueue, with its caller and end user, if the caller may send it."""
        return await attributed(http, body.to_request())

    async def attributed(http: Request, request: requests.AgentRequest) -> requests.AgentRequest:
        """``request`` with its caller and end user, if the caller may send it (else 403)."""
        identity = edge.identity_of(http.scope)
        if not await auth.allowed(identity, identities.Permission.SUBMIT):
            raise forbidden(f"{identity.name} may not send requests to this agent")
        if identity is identities.ANONYMOUS:
            return request
        user = request.user
        if (
            user is not None
            and user != identity.name
            and not await auth.allowed(identity, identities.Permission.DELEGATE)
        ):
            raise forbidden(
                f"{identity.name} may not act for other users (user {user!r}): "
                "that needs the delegate role"
            )
        return request.model_copy(update={"caller": identity.name, "user": user or identity.name})

    async def may_read(http: Request, state: envelopes.RequestState | None) -> bool:
        """Whether the caller may see this request: its own, or any with ``read``."""
        identity = edge.identity_of(http.scope)
        if await auth.allowed(identity, identities.Permission.READ):
            return True
        if not await auth.allowed(identity, identities.Permission.SUBMIT):
            raise forbidden(f"{identity.name} may not read requests of this agent")
        if state is None or state.state != "done":
            return state is not None  # queued: nothing but "queued" is shown
        result = state.result()
        return result is not None and result.caller == identity.name

    def too_long(body: api_models.RequestBody) -> Response | None:
        limit = cfg.server.max_input_chars
        if len(body.input) <= limit:
            return None
        message = f"body.input: {len(body.input)} characters, the limit is {limit}"
        detail = [{"loc": ["body", "input"], "msg": message, "type": "string_too_long"}]
        return api_responses.error(422, message, detail=detail)

    async def poll_state(request_id: str, within: float) -> envelopes.RequestState | None:
        """For a request accepted by another call: its state once done, within a bound."""
        loop = asyncio.get_running_loop()
        until = loop.time() + within
        delay = 0.02
        while True:
            state = await q.state(request_id)
            if state is None or state.state == "done" or loop.time() + delay > until:
                return state
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def submit(http: Request, request: requests.AgentRequest, wait: float) -> Response:
        """Enqueue and (optionally) wait: 200 with the result, 202, 409, 429 or 503."""
        rid = request.request_id
        telemetry.REQUEST_ID.set(rid)
        fut = waiter.expect(rid) if (wait > 0 and waiter is not None) else None
        trace = telemetry.inject()
        envelope = envelopes.Envelope(
            request,
            queue.now(),
            reply_to=waiter.channel if fut is not None and waiter is not None else None,
            traceparent=trace.get("traceparent"),
            tracestate=trace.get("tracestate"),
        )
        try:
            outcome = await q.enqueue(envelope)
            if isinstance(outcome, envelopes.Accepted):
                backlog_gauge.set(outcome.backlog)
                if fut is not None and waiter is not None:
                    result = await waiter.wait(rid, fut, wait)  # forgets fut itself
                    fut = None
                    if result is not None:
                        return api_responses.json_response(200, result)
                return api_responses.accepted(rid)
        except queue.QueueFull as e:
            rejected.inc()
            return api_responses.error(429, str(e), **{"Retry-After": str(e.retry_after)})
        finally:
            if fut is not None and waiter is not None:
                waiter.forget(rid, fut)
        # A known request id: nothing was queued; say what is known (waiting if asked).
        state: envelopes.RequestState | None = outcome
        if outcome.state == "queued" and wait > 0:
            state = await poll_state(rid, wait)
        if state is not None and state.state == "done" and not await may_read(http, state):
            return api_responses.error(409, f"request id {rid} is taken by another caller")
        if state is not None and state.state == "done" and state.result_json is not None:
            return api_responses.json_response(200, state.result_json)
        return api_responses.accepted(rid)

    async def caller_submits(
        http: Request, request: requests.AgentRequest, wait: float
    ) -> Response:
        """``submit`` for a route that builds its own request (the chat endpoint): the same
        permission checks and caller attribution as ``POST /v1/requests``."""
        return await submit(http, await attributed(http, request), wait)

    api_chat.install(app, cfg, caller_submits, q.redis)
    api_events.install(app, q)
    if services.cancellations is not None:
        api_cancellations.install(app, services.cancellations)

    @app.post(
        "/v1/requests",
        status_code=202,
        response_model=None,
        tags=["requests"],
        summary="Send a request to the agent",
        responses={
            200: {"model": requests.AgentResult, "description": "Answered within the wait."},
            202: {"model": api_models.Accepted, "description": "Accepted, not answered yet."},
            429: {"model": api_models.ErrorBody, "description": "Queue full; see Retry-After."},
            **api_responses.ERROR_RESPONSES,
        },
    )
    async def post_request(
        http: Request,
        body: api_models.RequestBody,
        wait: Annotated[
            float | None,
            Query(ge=0, le=api_models.MAX_WAIT_SECONDS, description="Seconds to wait."),
        ] = None,
    ) -> Response:
        problem = too_long(body)
        if problem is not None:
            return problem
        seconds = wait if wait is not None else (body.wait_seconds or 0.0)
        return await submit(http, await submitted_request(http, body), seconds)

    @app.post(
        "/agent/process",
        response_model=None,
        tags=["requests"],
        summary="Send a request and wait for the answer (synchronous)",
        responses={
            200: {"model": requests.AgentResult, "description": "The answer."},
            429: {"model": api_models.ErrorBody, "description": "Queue full; see Retry-After."},
            504: {"model": api_models.ErrorBody, "description": "No answer in time; poll later."},
            **api_responses.ERROR_RESPONSES,
        },
    )
    async def process(http: Request, body: api_models.RequestBody) -> Response:
        problem = too_long(body)
        if problem is not None:
            return problem
        request = await submitted_request(http, body)
        deadline = request.timeout_seconds or cfg.reliability.request_timeout_seconds
        waited = sync_wait_seconds(deadline)
        response = await submit(http, request, waited)
        if response.status_code == 202:
            rid = request.request_id
            return api_responses.error(
                504, no_answer_message(rid, waited), Location=f"/v1/requests/{rid}"
            )
        return response

    @app.get(
        "/v1/requests/{request_id}",
        response_model=None,
        tags=["requests"],
        summary="State and result of a request",
        responses={
            200: {"model": api_models.RequestStatus, "description": "Known request."},
            404: {"model": api_models.ErrorBody, "description": "Unknown (or expired) id."},
            **api_responses.ERROR_RESPONSES,
        },
    )
    async def get_request(request_id: RequestId, http: Request) -> Response:
        state = await q.state(request_id)
        if state is None or not await may_read(http, state):
            message = f"no request {request_id} (unknown, or its result expired)"
            return api_responses.error(404, message)
        head = orjson.dumps(request_id).decode()
        if state.state == "done" and state.result_json is not None:
            body = f'{{"request_id":{head},"state":"done","result":'.encode()
            return api_responses.json_response(200, body + state.result_json + b"}")
        doc = {"request_id": request_id, "state": "queued", "accepted_at": state.accepted_at}
        return api_responses.json_response(200, orjson.dumps(doc))

    @app.get(
        "/v1/requests/{request_id}/decisions",
        response_model=None,
        tags=["requests"],
        summary="Decision history of a request (audit trail)",
        responses={
            200: {"model": api_models.DecisionHistory, "description": "Records, step order."},
            404: {"model": api_models.ErrorBody, "description": "Unknown request id."},
            **api_responses.ERROR_RESPONSES,
        },
    )
    async def get_decisions(request_id: RequestId, http: Request) -> Response:
        identity = edge.identity_of(http.scope)
        if not await auth.allowed(identity, identities.Permission.READ) and not await may_read(
            http, await q.state(request_id)
        ):
            return api_responses.error(404, f"no request {request_id}")
        if services.history is None:
            message = "this agent keeps no decision history (audit is disabled)"
            return api_responses.error(404, message)
        decisions = await services.history(request_id)
        if not decisions and await q.state(request_id) is None:
            return api_responses.error(404, f"no request {request_id}")
        doc = {"request_id": request_id, "decisions": decisions}
        return api_responses.json_response(200, orjson.dumps(doc))


# -------------------------------------------------------------------------------- probes


def _install_probes(app: FastAPI, services: Services) -> None:
    health = services.health

    @app.get(
        "/healthz",
        tags=["probes"],
        summary="Liveness",
        response_model=None,
        responses={503: {"description": "The event loop's heartbeat is stale."}},
    )
    async def healthz() -> Response:
        alive, age = health.alive()
        doc = {
            "status": "ok" if alive else "stuck",
            "heartbeat_age_seconds": round(age, 3),
            "loop_lag_seconds": round(health.loop_lag, 3),
        }
        return api_responses.json_response(200 if alive else 503, orjson.dumps(doc))

    @app.get(
        "/readyz",
        tags=["probes"],
        summary="Readiness",
        response_model=None,
        responses={503: {"description": "Draining, Redis unreachable or workers stopped."}},
    )
    async def readyz() -> Response:
        r = await health.readiness()
        doc: dict[str, Any] = {
            "status": "ready" if r.ready else "not_ready",
            "reasons": dict(r.reasons),
            "authentication": services.authenticator.mode,
        }
        if services.authenticator.mode == identities.NoAuthentication.mode:
            doc["warning"] = "authentication is off: any caller may do anything"
        return api_responses.json_response(200 if r.ready else 503, orjson.dumps(doc))

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics", response_model=None)
    async def metrics_endpoint() -> Response:
        return Response(
            prometheus_client.generate_latest(prometheus_client.REGISTRY),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )


def _install_openapi(app: FastAPI, services: Services) -> None:
    """Declare bearer authentication on the protected routes when it is on."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        if services.authenticator.mode != identities.NoAuthentication.mode:
            schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
            for path, ops in doc.get("paths", {}).items():
                if path.startswith(edge.PROTECTED_PREFIXES):
                    for op in ops.values():
                        op["security"] = [{"bearerAuth": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
