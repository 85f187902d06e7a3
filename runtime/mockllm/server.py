"""The mock LLM's HTTP server: a lean ASGI app on uvicorn, holding the scenario and faults.

:mod:`command` builds a :class:`ServerState` from the command line and calls :func:`serve`;
everything the server decides comes from the pure modules (:mod:`completions` for the wire
format, :mod:`scenarios` for the answer, :mod:`faults` for what goes wrong, :mod:`stats` for
the counters). This module is only the I/O around them.

Endpoints::

    POST /v1/chat/completions   (also /chat/completions) the OpenAI Chat Completions API
    GET  /v1/models             (also /models)
    GET  /healthz
    GET|PUT|PATCH /admin/faults   read, replace, or change some fault settings (PUT keeps
                                ``strict``, ``strict_status``, ``context_window`` unless given)
    GET  /admin/stats           request counters since start or the last reset
    POST /admin/reset           zero the stats; {"faults": true} restores the start faults and
                                the seed, {"scenario": true} the start scenario, {"seed": N}
    GET|PUT /admin/scenario     show or replace the scenario (JSON object, or YAML text)

The per-request path does no file I/O and no logging; the admin endpoints are not protected
by ``--api-key`` and are not counted in the stats.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pilothouse.runtime.mockllm import completions, errors, faults, responses, scenarios, stats

__all__ = ["ServerState", "bind_socket", "create_app", "serve"]

logger = logging.getLogger("pilothouse.mockllm")

_GRACEFUL_SHUTDOWN_S: Final = 3
_UNCOUNTED_PREFIXES: Final = ("/admin/", "/healthz")


class ServerState:
    """Everything the server keeps between requests; mutated only by the admin endpoints."""

    def __init__(
        self,
        *,
        scenario: scenarios.Scenario,
        fault_config: faults.FaultConfig | None = None,
        seed: int | None = None,
        api_key: str | None = None,
    ) -> None:
        self.initial_scenario = scenario
        self.scenario = scenario
        self.initial_faults = fault_config or faults.FaultConfig()
        self.faults = self.initial_faults
        self.seed = seed
        self.rng = random.Random(seed)
        self.api_key = api_key
        self.stats = stats.Stats()
        self.stopped = asyncio.Event()
        """Set on shutdown: hung requests end."""
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        """A completion id suffix unique in this server's life."""
        return f"{self._id_prefix}{next(self._ids):x}"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = responses.build_error(message, type=type, param=param, code=code)
    return _json(body, status, headers)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the request body is already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


class _NoResponse(Response):
    """Sends nothing: the client is gone (and no status gets counted)."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


class _Counting:
    """ASGI wrapper counting every model-API request, its status, and requests in flight."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_UNCOUNTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        counters = self.state.stats
        counters.received(path)
        counters.in_flight += 1

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.state.stats.status(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            counters.in_flight -= 1


class _Handlers:
    """The endpoint functions, bound to one :class:`ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    # --- model API ------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        key = self.state.api_key
        if key is None:
            return True
        bearer = request.headers.get("authorization", "")
        given = bearer[7:] if bearer.startswith("Bearer ") else request.headers.get("api-key", "")
        return hmac.compare_digest(given.encode(), key.encode())

    def _unauthorized(self) -> Response:
        self.state.stats.outcome("unauthorized")
        return _error(
            401,
            "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )

    async def chat(self, request: Request) -> Response:
        state = self.state
        if not self._authorized(request):
            return self._unauthorized()
        try:
            chat = completions.parse_chat_request(await request.body())
        except errors.InvalidRequestError as e:
            state.stats.outcome("bad_request")
            return _error(400, e.message, param=e.param, code=e.code)
        refused = self._dialect(chat, await request.body())
        if refused is not None:
            return refused
        state.stats.model(chat.model)
        if chat.tools:
            state.stats.tool_choice(chat.tool_choice)
        decision = faults.decide(state.faults, chat.model, state.rng)
        state.stats.outcome(decision.outcome)
        if decision.outcome == "hang":
            return await self._hang(request)
        suffix = state.next_id()
        reply = scenarios.respond(
            state.scenario, scenarios.Conversation.of(chat), call_id_prefix=f"call_{suffix}"
        )
        delay = decision.delay_s + reply.latency_s
        if delay > 0:
            state.stats.delay(delay)
            await asyncio.sleep(delay)
        if decision.outcome == "error":
            return _error(
                decision.status,
                "The server had an error while processing your request (injected fault).",
                type="server_error",
            )
        if decision.outcome == "rate_limit":
            seconds = decision.retry_after or 0
            return _error(
                429,
                f"Rate limit reached for {chat.model}. Please try again in {seconds}s "
                "(injected fault).",
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": str(seconds)},
            )
        if decision.outcome == "malformed":
            media_type, body = faults.MALFORMED_BODIES[decision.malformed_variant]
            return Response(body, 200, media_type=media_type)
        state.stats.rule(reply.rule)
        completion_id = f"chatcmpl-{suffix}"
        created = int(time.time())
        if chat.stream:
            chunks = responses.build_chunks(
                chat, reply, completion_id=completion_id, created=created
            )
            return StreamingResponse(
                _sse(chunks), media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        return _json(
            responses.build_completion(chat, reply, completion_id=completion_id, created=created)
        )

    def _dialect(self, chat: completions.ChatRequest, body: bytes) -> Response | None:
        """Strict validation and the context window (``FaultConfig.strict``,
        ``context_window``): the refusal, or None."""
        settings = self.state.faults
        if settings.strict:
            problem = completions.strict_problem(body)
            if problem is not None:
                self.state.stats.outcome("bad_request")
                kind = "server_error" if settings.strict_status >= 500 else "invalid_request_error"
                return _error(settings.strict_status, problem, type=kind)
        window = settings.context_window
        if window is not None:
            tokens = responses.prompt_tokens(chat)
            if tokens > window:
                self.state.stats.outcome("bad_request")
                return _error(
                    400,
                    f"This model's maximum context length is {window} tokens. However, your "
                    f"messages resulted in {tokens} tokens. Please reduce the length of the "
                    "messages.",
                    param="messages",
                    code="context_length_exceeded",
                )
        return None

    async def _hang(self, request: Request) -> Response:
        """Answer nothing until the client disconnects or the server stops."""
        gone = asyncio.ensure_future(_disconnected(request))
        stopped = asyncio.ensure_future(self.state.stopped.wait())
        try:
            await asyncio.wait((gone, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            stopped.cancel()
        if not stopped.done() or stopped.cancelled():
            return _NoResponse()
        return _error(503, "The server is shutting down.", type="server_error")

    async def models(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        self.state.stats.outcome("ok")
        names = list(self.state.scenario.models)
        return _json(responses.build_model_list(names, created=int(time.time())))

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    # --- admin ----------------------------------------------------------------------------

    async def _json_body(self, request: Request) -> Any:
        body = await request.body()
        if not body.strip():
            return {}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise errors.InvalidRequestError(
                f"We could not parse the JSON body of your request: {e}.", code="invalid_json"
            ) from e

    async def get_faults(self, request: Request) -> Response:
        return _json(self.state.faults.model_dump(mode="json"))

    async def set_faults(self, request: Request) -> Response:
        try:
            data = await self._json_body(request)
            if not isinstance(data, dict):
                raise errors.InvalidRequestError("The fault settings must be a JSON object.")
            if request.method == "PATCH":
                new = self.state.faults.patched(data)
            else:
                # The server's dialect (strict, its status, the context window) is kept unless
                # given: it describes the server, not a fault.
                kept = self.state.faults.model_dump(include=set(faults.DIALECT_FIELDS))
                new = faults.FaultConfig.parse({**kept, **data})
        except errors.InvalidRequestError as e:
            return _error(400, e.message, param=e.param, code=e.code)
        except errors.FaultConfigError as e:
            return _error(400, str(e), code="invalid_faults")
        self.state.faults = new
        logger.info("faults set: %s", new.model_dump(mode="json"))
        return _json(new.model_dump(mode="json"))

    async def get_stats(self, request: Request) -> Response:
        return _json(self.state.stats.snapshot())

    async def reset(self, request: Request) -> Response:
        state = self.state
        try:
            data = await self._json_body(request)
        except errors.InvalidRequestError as e:
            return _error(400, e.message, code=e.code)
        if not isinstance(data, dict) or not set(data) <= {"faults", "scenario", "seed"}:
            return _error(400, "Reset takes a JSON object with 'faults', 'scenario', 'seed'.")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            return _error(400, "'seed' must be an integer.", param="seed", code="invalid_type")
        state.stats.reset()
        if data.get("faults"):
            state.faults = state.initial_faults
            state.rng.seed(state.seed)
        if data.get("scenario"):
            state.scenario = state.initial_scenario
        if seed is not None:
            state.seed = seed
            state.rng.seed(seed)
        return _json({"status": "reset"})

    async def get_scenario(self, request: Request) -> Response:
        return _json(self.state.scenario.summary())

    async def set_scenario(self, request: Request) -> Response:
        body = await request.body()
        source = "<PUT /admin/scenario>"
        try:
            if "json" in request.headers.get("content-type", ""):
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError as e:
                    raise errors.ScenarioError(f"{source}: not valid JSON: {e}") from e
                scenario = scenarios.from_data(data, source=source)
            else:
                scenario = scenarios.load_text(body.decode("utf-8", "replace"), source=source)
        except errors.ScenarioError as e:
            return _error(400, str(e), code="invalid_scenario")
        self.state.scenario = scenario
        logger.info("scenario %r loaded with %d rules", scenario.name, len(scenario.rules))
        return _json(scenario.summary())


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error(500, "The mock LLM failed unexpectedly; see its log.", type="server_error")


def create_app(state: ServerState) -> ASGIApp:
    """The ASGI application serving ``state``."""
    h = _Handlers(state)
    routes = [
        Route("/v1/chat/completions", h.chat, methods=["POST"]),
        Route("/chat/completions", h.chat, methods=["POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
        Route("/models", h.models, methods=["GET"]),
        Route("/healthz", h.health, methods=["GET"]),
        Route("/admin/faults", h.get_faults, methods=["GET"]),
        Route("/admin/faults", h.set_faults, methods=["PUT", "PATCH"]),
        Route("/admin/stats", h.get_stats, methods=["GET"]),
        Route("/admin/reset", h.reset, methods=["POST"]),
        Route("/admin/scenario", h.get_scenario, methods=["GET"]),
        Route("/admin/scenario", h.set_scenario, methods=["PUT"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if not request.url.path.startswith(_UNCOUNTED_PREFIXES):
            state.stats.outcome("not_found")
        if status == 405:
            return _error(
                405,
                f"Method {request.method} is not allowed on {request.url.path}.",
                code="method_not_allowed",
            )
        return _error(
            404, f"Unknown path: {request.method} {request.url.path}.", code="unknown_url"
        )

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_found, Exception: _server_error},
    )
    return _Counting(app, state)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port), ready to hand to :func:`serve`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket says it is TCP, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    """The base URL (no ``/v1``) a bound socket serves."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, telling the state when it stops and the caller when it listens."""

    def __init__(
        self, config: uvicorn.Config, state: ServerState, on_ready: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._state = state
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Runs as a signal handler: hand the event to the loop instead of setting it here.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._state.stopped.set)
        super().handle_exit(sig, frame)


def serve(
    state: ServerState,
    sock: socket.socket,
    *,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready(base_url)`` runs once the socket accepts."""
    config = uvicorn.Config(
        create_app(state),
        log_level=log_level.lower(),
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        loop="auto",
        http="auto",
    )
    url = socket_url(sock)

    def ready() -> None:
        if on_ready is not None:
            on_ready(url)

    _Server(config, state, ready).run(sockets=[sock])
