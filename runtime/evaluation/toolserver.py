"""A tiny, deterministic tool server: the tools of the shipped ``customer_support_v1`` dataset.

The agent executes tools as HTTP calls, so an evaluation (and ``make demo``) needs a real
endpoint behind ``weather_api`` and ``initiate_return``. This is one: a Starlette app on
uvicorn with deterministic answers, so a dataset can expect ``sunny`` in Tokyo.

    python -m pilothouse.runtime.evaluation.toolserver --port 8095

Endpoints (GET takes query parameters, POST a JSON body)::

    GET|POST /weather   {"city": "Tokyo"} -> {"city": "Tokyo", "conditions": "sunny",
                                               "temperature_c": 22, "humidity": 60}
    POST     /returns   {"order_id": "12345"} -> {"order_id": "12345", "status": "initiated",
                                                  "return_id": "RET-12345"}
    GET      /returns   the returns initiated since start
    GET      /healthz

Once listening it prints ``pilothouse tool server listening on http://HOST:PORT`` (the real
port with ``--port 0``); :class:`ToolServerProcess` starts it as a process and waits for that.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pilothouse.runtime import errors, processes

__all__ = ["DEFAULT_PORT", "READY_PREFIX", "ToolServerProcess", "create_app", "main", "weather"]

DEFAULT_PORT: Final = 8095
READY_PREFIX: Final = "pilothouse tool server listening on "
_ORDER_ID = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_KNOWN_WEATHER: Final = {
    "tokyo": ("sunny", 22, 60),
    "paris": ("cloudy", 15, 72),
    "london": ("rainy", 12, 85),
    "new york": ("windy", 18, 55),
    "berlin": ("overcast", 9, 78),
    "sydney": ("clear", 25, 50),
}
_CONDITIONS: Final = ("sunny", "cloudy", "rainy", "windy", "overcast", "clear", "snowy")


def weather(city: str) -> dict[str, Any]:
    """The (made-up, but always the same) weather of ``city``."""
    key = " ".join(city.lower().split())
    if key in _KNOWN_WEATHER:
        conditions, temperature, humidity = _KNOWN_WEATHER[key]
    else:
        digest = hashlib.sha256(key.encode()).digest()
        conditions = _CONDITIONS[digest[0] % len(_CONDITIONS)]
        temperature, humidity = digest[1] % 35 - 5, 30 + digest[2] % 60
    return {
        "city": city.strip().title(),
        "conditions": conditions,
        "temperature_c": temperature,
        "humidity": humidity,
    }


async def _arguments(request: Request) -> dict[str, Any] | JSONResponse:
    if request.method == "GET":
        return dict(request.query_params)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return body


async def _weather(request: Request) -> JSONResponse:
    args = await _arguments(request)
    if isinstance(args, JSONResponse):
        return args
    city = args.get("city")
    if not isinstance(city, str) or not city.strip() or len(city) > 100:
        return JSONResponse({"error": "'city' must be a city name"}, status_code=422)
    return JSONResponse(weather(city))


async def _returns(request: Request) -> JSONResponse:
    initiated: list[dict[str, Any]] = request.app.state.returns
    if request.method == "GET":
        return JSONResponse({"returns": initiated})
    args = await _arguments(request)
    if isinstance(args, JSONResponse):
        return args
    order_id = args.get("order_id")
    if isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    if not isinstance(order_id, str) or not _ORDER_ID.match(order_id):
        return JSONResponse({"error": "'order_id' must be an order number"}, status_code=422)
    record = {"order_id": order_id, "status": "initiated", "return_id": f"RET-{order_id}"}
    with request.app.state.lock:
        initiated.append(record)
    return JSONResponse(record)


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    """The tool server's ASGI app."""
    app = Starlette(
        routes=[
            Route("/weather", _weather, methods=["GET", "POST"]),
            Route("/returns", _returns, methods=["GET", "POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ]
    )
    app.state.returns = []
    app.state.lock = threading.Lock()
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pilothouse.runtime.evaluation.toolserver [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(prog="pilothouse-toolserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address (%(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 2
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", access_log=False))
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0


class ToolServerProcess(processes.ChildProcess):
    """The tool server as a child process on a free loopback port (tests and the demo).

    :meth:`start` waits until it listens and raises :class:`errors.DependencyUnavailable`
    with its output when it exits first or does not report in time.
    """

    description = "the tool server"
    ready_pattern = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")

    def __init__(
        self, *, port: int = 0, start_timeout: float = 20.0, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(port=port, start_timeout=start_timeout)
        self.host = host
        self.url = ""

    def argv(self) -> list[str]:
        return [sys.executable, "-m", __name__, "--host", self.host, "--port", str(self.port)]

    def failure(self, message: str) -> Exception:
        return errors.DependencyUnavailable(message)

    def wait_until_ready(self, deadline: float) -> None:
        self.url = self.await_ready_line(deadline)


if __name__ == "__main__":
    sys.exit(main())
