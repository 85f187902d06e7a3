"""A recording reverse proxy in front of the Kubernetes API: which requests did a client make?

The chart's RBAC test puts it between the operator and the real API server, to learn exactly
which (API group, resource, verb) the operator used under the chart's ServiceAccount token, and
which of them were refused. The client talks plain HTTP to the proxy (a kubeconfig written by
:meth:`ApiRecorder.kubeconfig`, token only); the proxy forwards every request unchanged,
Authorization header included, to the API server over TLS, streams the answer back (watches
stay open), and records method, path, query and status. Nothing is faked: every decision is the
API server's.

:func:`rbac_verbs` turns a recorded request into the RBAC attributes the API server checked:
``GET`` on a name is ``get``, on a collection ``list`` (``watch`` with ``?watch=true``); ``POST``
``create``; ``PATCH`` ``patch``, plus ``create`` when a server-side apply created the object
(201), because the API server authorizes that as a create too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import ssl
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

_HOP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)


@dataclasses.dataclass(frozen=True)
class Request:
    """One request the client made, and the API server's status code."""

    method: str
    path: str
    query: str
    status: int


@dataclasses.dataclass(frozen=True, order=True)
class Attributes:
    """The RBAC attributes of a resource request."""

    group: str
    resource: str  # "deployments" or "deployments/scale"
    verb: str
    namespace: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource}{where}"


def parse_path(path: str) -> tuple[str, str, str, str | None] | None:
    """(group, namespace, resource[/subresource], name) of a resource path; None otherwise."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None  # discovery, /version, /openapi, /healthz: non-resource requests
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    return group, namespace, resource, name


def rbac_verbs(request: Request) -> list[Attributes]:
    """The RBAC attributes the API server authorized for this request (none if non-resource)."""
    parsed = parse_path(request.path)
    if parsed is None:
        return []
    group, namespace, resource, name = parsed
    query = parse_qs(request.query)
    method = request.method.upper()
    if method == "GET":
        if query.get("watch", [""])[0] in ("true", "1"):
            verbs = ["watch"]
        else:
            verbs = ["get"] if name else ["list"]
    elif method == "POST":
        verbs = ["create"]
    elif method == "PUT":
        verbs = ["update"]
    elif method == "PATCH":
        verbs = ["patch", "create"] if request.status == 201 else ["patch"]
    elif method == "DELETE":
        verbs = ["delete"] if name else ["deletecollection"]
    else:
        verbs = [method.lower()]
    return [Attributes(group, resource, verb, namespace) for verb in verbs]


class ApiRecorder:
    """The proxy, served from a background thread; ``requests`` grows as the client works."""

    def __init__(self, upstream: str, ca_file: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.requests: list[Request] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def start(self) -> ApiRecorder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ApiRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, token: str, path: Path) -> Path:
        """A kubeconfig that reaches the API server through this proxy with only ``token``."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "recorded", "cluster": {"server": self.url}}],
                    "users": [{"name": "token", "user": {"token": token}}],
                    "contexts": [
                        {"name": "recorded", "context": {"cluster": "recorded", "user": "token"}}
                    ],
                    "current-context": "recorded",
                }
            )
        )
        return path

    def recorded(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def attributes(self, *, refused: bool | None = None) -> set[Attributes]:
        """RBAC attributes of the recorded requests: all, only refused (403), or only allowed."""
        out: set[Attributes] = set()
        for request in self.recorded():
            if refused is None or (request.status == 403) == refused:
                out.update(rbac_verbs(request))
        return out

    # ---------------------------------------------------------------------------- serving

    async def _start(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        self._session = ClientSession(
            connector=TCPConnector(ssl=context),
            timeout=ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def _stop(self) -> None:
        # Upstream first: open watches end at once, so the handlers streaming them return.
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        url = self.upstream + request.rel_url.raw_path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        split = urlsplit(request.rel_url.raw_path_qs)
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            with self._lock:
                self.requests.append(
                    Request(request.method, split.path, split.query, upstream.status)
                )
            response = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
                },
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, ClientError):
                pass  # the client went away (a watch it stopped), or the proxy is stopping
            return response


def describe(attributes: Iterable[Attributes]) -> str:
    return "\n".join(f"  {a}" for a in sorted(attributes))
