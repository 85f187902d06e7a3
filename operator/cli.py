"""``pilothouse-operator``: run the operator.

Configures Kopf (namespaces to watch, peering, watch timeouts, liveness endpoint) and the
runtime defaults the operator renders into every agent, then runs the Kopf event loop.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="pilothouse-operator",
        description="Reconcile AgentDeployment and AgentPolicy resources into agent runtimes.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pilothouse-operator`` console script."""
    _parser().parse_args(argv)
    print("pilothouse-operator: the reconciler is not built yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
