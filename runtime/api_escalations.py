"""The escalation routes of the HTTP API: list pending approvals, approve, deny.

:func:`install` adds them to the app built by :func:`pilothouse.runtime.api.create_app`; what
they call is an :class:`EscalationDesk` (:class:`pilothouse.runtime.desk.Desk` in a runtime,
over the escalation store in PostgreSQL). Approving resumes the request (it is queued again
with ``approved_escalation`` set); denying ends it with a refusal, audited and stored as its
answer. Every route needs the ``approve`` permission; the decider recorded is the authenticated
caller, and the caller that sent a request cannot decide its escalation (403, four eyes). Of
two approvers at once one wins and the other gets 409; the same decision repeated by the same
identity is answered as the first time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Protocol

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from starlette import exceptions as starlette_exceptions

from pilothouse.runtime import api_models, api_responses, edge, errors, identities, requests

__all__ = [
    "ESCALATION_ID_PATTERN",
    "EscalationDecided",
    "EscalationDesk",
    "EscalationForbidden",
    "EscalationNotFound",
    "install",
]

ESCALATION_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$"
EscalationId = Annotated[
    str, Path(pattern=ESCALATION_ID_PATTERN, description="The escalation's id.")
]


class EscalationNotFound(errors.UsageError):
    """No pending or decided escalation has this id."""


class EscalationDecided(errors.UsageError):
    """The escalation was approved, denied or expired already."""


class EscalationForbidden(errors.UsageError):
    """The caller may not decide this escalation (it sent the request)."""


class EscalationDesk(Protocol):
    """Pending approvals, as the API needs them (serving adapts the escalation store)."""

    async def pending(self) -> list[dict[str, Any]]:
        """Pending escalations, JSON-ready, oldest first."""
        ...

    async def approve(
        self, escalation_id: str, *, by: str | None, note: str | None
    ) -> requests.AgentRequest:
        """Approve and resume: the request is queued again (``approved_escalation`` set);
        returns it."""
        ...

    async def deny(
        self, escalation_id: str, *, by: str | None, reason: str | None
    ) -> requests.AgentResult:
        """Deny; the request ends (answered and audited); returns its final answer."""
        ...


def install(
    app: FastAPI,
    desk: Callable[[], EscalationDesk | None],
    auth: identities.Authenticator = identities.NO_AUTHENTICATION,
) -> None:
    """Add the escalation routes; ``desk()`` is None when the agent keeps no audit trail."""
    responses: dict[int | str, dict[str, Any]] = {
        403: {
            "model": api_models.ErrorBody,
            "description": "No approve permission, or the caller sent this request.",
        },
        404: {"model": api_models.ErrorBody, "description": "Unknown escalation."},
        409: {"model": api_models.ErrorBody, "description": "Already decided."},
        **api_responses.ERROR_RESPONSES,
    }

    def the_desk() -> EscalationDesk:
        found = desk()
        if found is None:
            raise starlette_exceptions.HTTPException(
                404, "this agent has no escalation store (audit is disabled)"
            )
        return found

    async def approver(request: Request) -> identities.Identity:
        identity = edge.identity_of(request.scope)
        if not await auth.allowed(identity, identities.Permission.APPROVE):
            raise starlette_exceptions.HTTPException(
                403, f"{identity.name} may not list, approve or deny escalations of this agent"
            )
        return identity

    async def decide(action: Callable[[], Awaitable[Response]], escalation_id: str) -> Response:
        try:
            return await action()
        except EscalationNotFound:
            return api_responses.error(404, f"no escalation {escalation_id}")
        except EscalationDecided as e:
            return api_responses.error(409, str(e))
        except EscalationForbidden as e:
            return api_responses.error(403, str(e))

    @app.get(
        "/v1/escalations",
        response_model=api_models.EscalationList,
        tags=["escalations"],
        summary="Actions waiting for approval",
        responses={
            403: responses[403],
            404: responses[404],
            503: api_responses.ERROR_RESPONSES[503],
        },
    )
    async def list_escalations(request: Request) -> Response:
        await approver(request)
        pending = await the_desk().pending()
        return api_responses.json_response(200, orjson.dumps({"escalations": pending}))

    @app.post(
        "/v1/escalations/{escalation_id}/approve",
        status_code=202,
        response_model=None,
        tags=["escalations"],
        summary="Approve an escalated action; the request resumes",
        responses={202: {"model": api_models.Accepted, "description": "Resumed."}, **responses},
    )
    async def approve(
        escalation_id: EscalationId,
        request: Request,
        body: api_models.ApprovalBody | None = None,
    ) -> Response:
        who = await approver(request)

        async def run() -> Response:
            b = body or api_models.ApprovalBody()
            resumed = await the_desk().approve(escalation_id, by=who.name, note=b.note)
            return api_responses.accepted(resumed.request_id)

        return await decide(run, escalation_id)

    @app.post(
        "/v1/escalations/{escalation_id}/deny",
        response_model=None,
        tags=["escalations"],
        summary="Deny an escalated action; the request ends with a refusal",
        responses={
            200: {"model": requests.AgentResult, "description": "Final answer."},
            **responses,
        },
    )
    async def deny(
        escalation_id: EscalationId,
        request: Request,
        body: api_models.DenialBody | None = None,
    ) -> Response:
        who = await approver(request)

        async def run() -> Response:
            b = body or api_models.DenialBody()
            result = await the_desk().deny(escalation_id, by=who.name, reason=b.reason)
            return api_responses.json_response(200, result.model_dump_json().encode())

        return await decide(run, escalation_id)
