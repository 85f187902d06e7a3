"""``pilothouse mock-llm``: run the scripted, fault-injecting OpenAI-compatible server.

The ``pilothouse`` command line calls :func:`configure_parser` and :func:`run`;
``python -m pilothouse.runtime.mockllm`` calls :func:`main`. Once the socket accepts
connections the command prints ``pilothouse mock-llm listening on http://HOST:PORT`` (the real
port when ``--port 0``): :class:`~pilothouse.runtime.mockllm.process.MockLLMProcess` waits for
that line. The server modules are imported only when the command runs, so building the
``pilothouse`` parser stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pilothouse.runtime.mockllm import errors, faults, scenarios

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "READY_PREFIX",
    "configure_parser",
    "fault_flags",
    "fault_settings",
    "main",
    "run",
]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8090
READY_PREFIX: Final = "pilothouse mock-llm listening on "
API_KEY_ENV: Final = "PILOTHOUSE_MOCK_LLM_API_KEY"
STRICT_ENV: Final = "PILOTHOUSE_MOCK_LLM_STRICT"
"""Set to ``1`` to start every mock LLM in strict mode unless its flags say otherwise (test
suites set it so that a request real servers would refuse fails every test that makes it)."""

# FaultConfig field -> command-line flag
_FAULT_FLAGS: Final = {
    "latency_ms": "--latency-ms",
    "latency_jitter_ms": "--latency-jitter-ms",
    "error_rate": "--error-rate",
    "error_status": "--error-status",
    "rate_limit_rate": "--rate-limit-rate",
    "retry_after": "--retry-after",
    "hang_rate": "--hang-rate",
    "malformed_rate": "--malformed-rate",
    "models": "--fault-models",
    "strict": "--strict",
    "strict_status": "--strict-status",
    "context_window": "--context-window",
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``mock-llm`` options to ``parser``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to listen on; 0 picks a free one and prints it (%(default)s)",
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="YAML or JSON scenario file (default: the built-in scenario)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require 'Authorization: Bearer KEY' (also from ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        type=str.lower,
        help="log level (%(default)s)",
    )
    g = parser.add_argument_group(
        "faults", "injected into chat completions; change them at run time with PUT /admin/faults"
    )
    g.add_argument("--latency-ms", type=float, help="added latency in milliseconds")
    g.add_argument("--latency-jitter-ms", type=float, help="up to this much more, at random")
    g.add_argument("--error-rate", type=float, help="share of requests answered with an error")
    g.add_argument("--error-status", type=int, help="status of injected errors (500)")
    g.add_argument("--rate-limit-rate", type=float, help="share answered 429 with Retry-After")
    g.add_argument("--retry-after", type=int, help="Retry-After seconds of injected 429s (1)")
    g.add_argument("--hang-rate", type=float, help="share never answered until the client leaves")
    g.add_argument("--malformed-rate", type=float, help="share answered 200 with a broken body")
    g.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="validate requests as strict servers do (content always a string, tool results "
        "match tool calls)",
    )
    g.add_argument("--strict-status", type=int, help="status of strict-mode refusals (500)")
    g.add_argument(
        "--context-window", type=int, help="prompt tokens allowed; beyond, 400 context_length"
    )
    g.add_argument(
        "--fault-models",
        action="append",
        metavar="NAME[,NAME]",
        help="only these models get faults (repeatable; default: all)",
    )


def fault_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The fault settings given as flags (the inverse of :func:`fault_flags`)."""
    settings: dict[str, Any] = {}
    for field in _FAULT_FLAGS:
        value = getattr(args, "fault_models" if field == "models" else field, None)
        if value is None:
            continue
        if field == "models":
            value = [m.strip() for item in value for m in item.split(",") if m.strip()]
        settings[field] = value
    return settings


def fault_flags(config: faults.FaultConfig) -> list[str]:
    """The command-line flags that start a server with ``config`` (only non-defaults)."""
    flags: list[str] = []
    defaults = faults.FaultConfig()
    for field, flag in _FAULT_FLAGS.items():
        value = getattr(config, field)
        if value == getattr(defaults, field):
            continue
        if isinstance(value, bool):
            flags.append(flag)
            continue
        flags += [flag, ",".join(value) if field == "models" else str(value)]
    return flags


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; usage errors raise :class:`errors.MockLLMError` subclasses."""
    from pilothouse.runtime.mockllm import server  # the server stack loads only here

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    scenario = scenarios.load_file(args.scenario) if args.scenario else scenarios.load_default()
    settings = fault_settings(args)
    if os.environ.get(STRICT_ENV) == "1":
        settings.setdefault("strict", True)
    fault_config = faults.FaultConfig.parse(settings)
    try:
        sock = server.bind_socket(args.host, args.port)
    except OSError as e:
        print(
            f"pilothouse mock-llm: cannot listen on {args.host}:{args.port}: {e.strerror}",
            file=sys.stderr,
        )
        return 1
    state = server.ServerState(
        scenario=scenario, fault_config=fault_config, seed=args.seed, api_key=args.api_key
    )

    def announce(url: str) -> None:
        print(
            f"{READY_PREFIX}{url} (scenario {scenario.name!r}, {len(scenario.rules)} rules)",
            flush=True,
        )

    try:
        server.serve(state, sock, log_level=args.log_level, on_ready=announce)
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pilothouse.runtime.mockllm``: the same command on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m pilothouse.runtime.mockllm",
        description="Run a scripted, fault-injecting OpenAI-compatible server.",
    )
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except errors.MockLLMError as e:
        print(f"pilothouse mock-llm: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
