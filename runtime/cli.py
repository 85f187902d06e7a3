"""``pilothouse``: the runtime and its tooling on the command line.

Each subcommand lives in its own module exposing ``configure_parser(parser)`` and
``run(args) -> int``; this module only lists them and imports the chosen one lazily, so
``pilothouse --help`` stays fast and one command's dependencies never slow another.

Exit status: what the command returns; 2 with a one-line message for a usage error (a bad
option, config or dataset), 1 with a one-line message for any other failure Pilothouse raises
(e.g. the audit database cannot be reached), never a traceback for either.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pilothouse.runtime import errors

__all__ = ["main"]

# (name, module, one-line help)
_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "pilothouse.runtime.serve_command", "run an agent: HTTP API, queue, workers"),
    (
        "mock-llm",
        "pilothouse.runtime.mockllm.command",
        "run a scripted, fault-injecting OpenAI-compatible server",
    ),
    ("config", "pilothouse.runtime.config_command", "validate and print a runtime config file"),
    ("history", "pilothouse.runtime.history_command", "show an agent's decision history"),
    ("audit", "pilothouse.runtime.audit_command", "verify the audit trail, apply retention"),
    ("escalations", "pilothouse.runtime.escalations_command", "list, approve, deny escalations"),
    (
        "eval",
        "pilothouse.runtime.evaluation.command",
        "score an agent on an evaluation dataset and gate on the score",
    ),
)


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the top-level parser has no valued options,
    so it is the first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilothouse",
        description="Pilothouse runtime: serve an agent, inspect its history, evaluate it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_text in _COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Only the chosen command's module is imported: one command's dependencies never
        # slow another's start-up (or `pilothouse --help`).
        if name == chosen:
            importlib.import_module(module).configure_parser(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pilothouse`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser(_chosen(arguments)).parse_args(arguments)
    module = importlib.import_module(args._module)
    try:
        code: int = module.run(args)
    except errors.UsageError as e:
        print(f"pilothouse {args.command}: {e}", file=sys.stderr)
        return 2
    except errors.PilothouseError as e:  # e.g. PostgreSQL unreachable: a message, no traceback
        print(f"pilothouse {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
