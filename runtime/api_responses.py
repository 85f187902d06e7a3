"""The HTTP API's answers: JSON responses, the error body, and the error codes per status.

Shared by the routes of :mod:`pilothouse.runtime.api` and
:mod:`pilothouse.runtime.api_escalations`; the body of every error is
:class:`~pilothouse.runtime.api_models.ErrorBody` (built by :func:`edge.error_body`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson
from fastapi.responses import Response

from pilothouse.runtime import api_models, edge

__all__ = [
    "ERROR_CODES",
    "ERROR_RESPONSES",
    "accepted",
    "error",
    "json_response",
    "where",
]

ERROR_CODES: Final = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "queue_full",
    503: "unavailable",
    504: "timeout",
}
"""The ``error`` code of each status."""


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    """A response whose body is JSON already (results are passed through as stored)."""
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str, *, detail: Any = None, **headers: str) -> Response:
    """An error answer naming the problem."""
    code = ERROR_CODES.get(status, "error")
    return json_response(status, edge.error_body(code, message, detail), headers or None)


def accepted(request_id: str) -> Response:
    """202: queued, with where to read the state."""
    location = f"/v1/requests/{request_id}"
    body = orjson.dumps({"request_id": request_id, "state": "queued"})
    return json_response(202, body, {"Location": location})


def where(loc: Sequence[Any]) -> str:
    """``body.metadata.k`` from a validation error's location."""
    return ".".join(str(p) for p in loc) or "request"


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    s: {"model": api_models.ErrorBody, "description": d}
    for s, d in (
        (400, "Malformed JSON."),
        (401, "Missing or unknown bearer token (when authentication is on)."),
        (403, "The caller's roles (or RBAC) do not allow this call."),
        (413, "Body larger than server.maxBodyBytes."),
        (415, "Body not JSON."),
        (422, "A field is missing, has the wrong type, is unknown or out of bounds."),
        (503, "Redis or PostgreSQL unreachable; retry later."),
    )
}
"""The error answers every route documents in the OpenAPI document."""
