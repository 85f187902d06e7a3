"""``pilothouse serve``: run an agent's runtime from the config file the operator mounts.

    pilothouse serve --config /etc/pilothouse/runtime.yaml [--role api|worker|all]
                     [--host 0.0.0.0] [--port 8080]

An invalid config stops the start with a message naming the field, exit code 2 (the CLI turns
:class:`errors.UsageError` into that). Logs go to stderr as JSON lines.

SIGTERM (or SIGINT) drains: ``/readyz`` turns 503 at once, the worker pool stops taking work and
gives in-flight work ``workers.shutdownGraceSeconds`` to finish (what does not finish is given
back, unacknowledged, for another replica), then the HTTP server stops accepting connections,
lets open ones finish, and the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Generator
from typing import Final

import uvicorn

from pilothouse.runtime import config, errors, serving, telemetry

__all__ = ["configure_parser", "run"]

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD: Final = 10_000
"""Allocations between two young-generation collections (Python's default is 700)."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="runtime config (YAML or JSON)"
    )
    parser.add_argument(
        "--role",
        choices=[r.value for r in serving.Role],
        default=serving.Role.ALL.value,
        help="api: HTTP API only; worker: worker pool (+ probes, metrics); all: both (default)",
    )
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this command drains before it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _with_overrides(
    cfg: config.RuntimeConfig, host: str | None, port: int | None
) -> config.RuntimeConfig:
    update: dict[str, object] = {}
    if host is not None:
        update["host"] = host
    if port is not None:
        if not 0 <= port <= 65535:
            raise errors.ConfigError(f"--port {port}: use 0-65535")
        update["port"] = port
    if not update:
        return cfg
    return cfg.model_copy(update={"server": cfg.server.model_copy(update=update)})


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it is, with the runtime's dependencies): the
    same requests for less CPU. The standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(args: argparse.Namespace) -> int:
    cfg = _with_overrides(config.load_config(args.config), args.host, args.port)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(cfg, serving.Role(args.role)))


async def serve(cfg: config.RuntimeConfig, role: serving.Role) -> int:
    """Run until SIGTERM/SIGINT, then drain and stop; the process's exit code."""
    runtime = await serving.build_runtime(cfg, role=role)  # config problems raise here
    telemetry.configure_logging(cfg.telemetry.log_level)
    # What start-up allocated (modules, the app, config) lives as long as the process: keep it
    # out of the collector's way, and let the young generation grow a little before a pass.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    server = _Server(
        uvicorn.Config(
            runtime.app,
            host=cfg.server.host,
            port=cfg.server.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(cfg.workers.shutdown_grace_seconds)),
            server_header=False,
        )
    )
    try:
        await runtime.start()
        serving_task = asyncio.create_task(server.serve(), name="http-server")
        stopped = asyncio.create_task(stop.wait(), name="stop-signal")
        await asyncio.wait({serving_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if serving_task.done():
            stopped.cancel()
            log.error("the HTTP server stopped on its own (is the port free?)")
            return 1
        log.info("shutdown requested")
        await runtime.drain()
        server.should_exit = True
        await serving_task
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runtime.close()
        log.info("stopped")
