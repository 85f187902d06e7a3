"""``DELETE /v1/requests/{id}``: cancel a request that is queued or running.

The route marks the request (:mod:`pilothouse.runtime.cancellations`); the worker that holds it,
or the first to take it, refuses its next action as the policy ``cancelled``, so the request
ends with ``status: refused``, ``policy: cancelled``, and the audit trail records where it
stopped. Answered at once with 202 (the stop happens in the worker: read the outcome at
``GET /v1/requests/{id}`` or follow it at ``.../events``). Installed by
:func:`pilothouse.runtime.api.create_app`.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import FastAPI, Path
from fastapi.responses import Response

from pilothouse.runtime import api_models, api_responses, cancellations, requests

__all__ = ["install"]

RequestId = Annotated[
    str, Path(pattern=requests.REQUEST_ID_PATTERN, description="The request's id.")
]


def install(app: FastAPI, marks: cancellations.Cancellations) -> None:
    """Add the cancel route to ``app``."""

    @app.delete(
        "/v1/requests/{request_id}",
        status_code=202,
        response_model=None,
        tags=["requests"],
        summary="Cancel a queued or running request",
        responses={
            202: {
                "model": api_models.Accepted,
                "description": "Marked: it stops before its next step (state `cancelling`).",
            },
            404: {"model": api_models.ErrorBody, "description": "Unknown (or expired) id."},
            409: {"model": api_models.ErrorBody, "description": "Answered already."},
            **api_responses.ERROR_RESPONSES,
        },
    )
    async def cancel_request(request_id: RequestId) -> Response:
        found = await marks.cancel(request_id)
        if found is None:
            return api_responses.error(404, f"no request {request_id} (unknown, or expired)")
        if found == "done":
            message = f"request {request_id} is answered already; nothing to cancel"
            return api_responses.error(409, message, Location=f"/v1/requests/{request_id}")
        body = orjson.dumps({"request_id": request_id, "state": "cancelling"})
        return api_responses.json_response(202, body, {"Location": f"/v1/requests/{request_id}"})
