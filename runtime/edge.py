"""The HTTP edge: what every request passes before and after the API's routes.

A pure ASGI middleware (no per-request task or body copy) wrapped around the FastAPI app by
:func:`pilothouse.runtime.api.create_app`. In order:

1. a server span per request, continuing the caller's W3C ``traceparent`` when it sends one;
2. authentication of ``/v1/`` and ``/agent/`` by the agent's
   :class:`~pilothouse.runtime.identities.Authenticator` (health, metrics and the OpenAPI
   document stay open): 401 with ``WWW-Authenticate: Bearer`` when the credentials prove no
   identity, 503 when they cannot be checked now; the identity goes into the ASGI scope
   (:func:`identity_of`) for the routes to authorise;
3. the body size bound ``server.maxBodyBytes``: 413 from ``Content-Length`` before anything is
   read, or as soon as a streamed body passes the bound;
4. JSON only for bodies: 415 for another ``Content-Type``;
5. afterwards: the route template, status and duration as metrics and span attributes (labels
   use route templates, never raw paths, so their number stays bounded).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson
from opentelemetry import trace
from starlette import exceptions as starlette_exceptions

from pilothouse.runtime import identities, metrics, telemetry

__all__ = ["IDENTITY_KEY", "OTHER_ROUTE", "PROTECTED_PREFIXES", "Edge", "error_body", "identity_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIXES: Final = ("/v1/", "/agent/")
"""Paths that need a token when authentication is on."""
IDENTITY_KEY: Final = "pilothouse.identity"
"""ASGI scope key of the caller's :class:`identities.Identity`."""
OTHER_ROUTE: Final = "_other"
"""``route`` label of requests that matched no route."""
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_WANTED_HEADERS: Final = frozenset(
    {b"traceparent", b"tracestate", b"authorization", b"content-length", b"content-type"}
)


def error_body(code: str, message: str, detail: Any = None) -> bytes:
    """The JSON of every error answer (:class:`api_models.ErrorBody`)."""
    doc: dict[str, Any] = {"error": code, "message": message}
    if detail is not None:
        doc["detail"] = detail
    return orjson.dumps(doc)


def identity_of(scope: Scope) -> identities.Identity:
    """The authenticated caller of a request the edge let through to a protected route."""
    found = scope.get(IDENTITY_KEY)
    if not isinstance(found, identities.Identity):
        raise LookupError(f"no caller identity for {scope.get('path')} (not a protected path)")
    return found


async def _respond(
    send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Edge:
    """The ASGI middleware described in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        authenticator: identities.Authenticator = identities.NO_AUTHENTICATION,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.auth = authenticator
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k: v for k, v in scope["headers"] if k in _WANTED_HEADERS}
        carrier = {
            k.decode(): headers[k].decode("latin-1")
            for k in (b"traceparent", b"tracestate")
            if k in headers
        }
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with telemetry.span(
            method,
            carrier=carrier,
            kind=trace.SpanKind.SERVER,
            attributes=lambda: {"http.request.method": method, "url.path": path},
        ) as span:
            rejected = await self._authenticate(scope, path, headers)
            if rejected is None:
                rejected = self._reject(method, path, headers)
            if rejected is not None:
                code, body, extra = rejected
                await _respond(send_and_note, code, body, extra)
            else:
                await self.app(scope, self._bounded(receive), send_and_note)
            route = scope.get("route")
            template = getattr(route, "path", None) or OTHER_ROUTE
            if span.is_recording():
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set_status(trace.StatusCode.ERROR)
        key = (template, method, status[0])
        children = self._children.get(key)
        if children is None:  # bounded: route templates x methods x status codes
            children = self._children[key] = (
                metrics.HTTP_REQUESTS.labels(route=template, method=method, code=str(status[0])),
                metrics.HTTP_REQUEST_DURATION.labels(route=template, method=method),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    async def _authenticate(
        self, scope: Scope, path: str, headers: dict[bytes, bytes]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """Put the caller's identity into the scope; the answer when there is none."""
        if not path.startswith(PROTECTED_PREFIXES):
            return None
        try:
            identity = await self.auth.authenticate(headers.get(b"authorization"))
        except identities.AuthenticationUnavailable as e:
            body = error_body("unavailable", f"cannot check the credentials now: {e}")
            return 503, body, [(b"retry-after", b"1")]
        if identity is None:
            body = error_body("unauthorized", "a valid bearer token is required")
            return 401, body, [(b"www-authenticate", b'Bearer realm="pilothouse"')]
        scope[IDENTITY_KEY] = identity
        return None

    def _reject(
        self, method: str, path: str, headers: dict[bytes, bytes]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """Status, body and headers of an answer given before the app runs, or None."""
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return 400, error_body("invalid_request", "Content-Length is not a number"), []
            if n > self.max_body_bytes:
                return 413, self._too_large(), []
        if method in _BODY_METHODS and (length is None or length != b"0"):
            ctype = headers.get(b"content-type")
            if ctype is not None:
                main = ctype.split(b";", 1)[0].strip().lower()
                if main != b"application/json" and not main.endswith(b"+json"):
                    got = main.decode("latin-1")
                    message = f"Content-Type must be application/json, not {got!r}"
                    return 415, error_body("unsupported_media_type", message), []
        return None

    def _too_large(self) -> bytes:
        return error_body(
            "body_too_large",
            f"the request body exceeds the limit of {self.max_body_bytes} bytes",
        )

    def _bounded(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise starlette_exceptions.HTTPException(
                        413, f"the request body exceeds the limit of {limit} bytes"
                    )
            return message

        return bounded_receive
