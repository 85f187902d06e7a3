"""``python -m bench [NAME ...]``: run the benchmarks (all of them by default), each in its own
process so one benchmark's state (event loop, metrics, servers) never skews another's."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

PREFIX = "bench_"


def available() -> list[str]:
    """Benchmark names: the ``bench_<name>.py`` modules beside this file."""
    folder = str(Path(__file__).parent)
    return sorted(
        m.name.removeprefix(PREFIX)
        for m in pkgutil.iter_modules([folder])
        if m.name.startswith(PREFIX)
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(
            f"bench: unknown benchmark(s) {', '.join(unknown)}; available: "
            f"{', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{PREFIX}{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
