"""``python -m demo [--smoke]``: run the demo, always tear it down, exit 0 only if it all worked.

``make demo`` runs the full demo, ``make demo-smoke`` (and ``e2e/test_demo_smoke.py``) the
smoke mode: a shorter flood and a 5 s scale-down window. Exit codes: 0 every step worked,
1 a step failed (the reason is printed, with the log to read), 2 bad arguments, 130 / 143
interrupted by Ctrl-C / SIGTERM. Whatever happens, every process the demo started is stopped
before it exits (:meth:`demo.stack.Stack.close`; further Ctrl-Cs are ignored while it runs), and
a process still alive after that is reported.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import real_pods

from demo import console, realpods, run, scenes, stack, waiting

__all__ = ["main"]

STEPS = 7
CACHE = run.REPO / ".cache"
FULL = {"flood": 45, "window": 10}
SMOKE = {"flood": 25, "window": 5}


class _Signalled(BaseException):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum: int, _frame: FrameType | None) -> None:
    raise _Signalled(signum)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make demo",
        description="Pilothouse end to end on this machine: control plane, operator, agent, "
        "requests, audit trail, metrics and queue-driven scaling.",
    )
    p.add_argument("--smoke", action="store_true", help="a short flood and scale-down window")
    p.add_argument("--flood", type=int, help="requests queued in step 7 (full 45, smoke 25)")
    p.add_argument("--window", type=int, help="scale-down stabilization seconds (full 10, smoke 5)")
    p.add_argument("--nodes", type=int, default=2, help="KWOK nodes (default %(default)s)")
    p.add_argument(
        "--pods",
        choices=("auto", "real", "kwok"),
        help="real: the operator and the agent as pods on a real node (root, Linux); kwok: KWOK"
        " nodes, the operator and the runtime as local processes; auto (the full demo's"
        " default): real where possible. The smoke mode defaults to kwok.",
    )
    p.add_argument("--workdir", type=Path, help="logs and files (default .cache/demo[-smoke])")
    p.add_argument(
        "--state-dir", type=Path, help="control plane state (.cache/cluster-demo[-smoke])"
    )
    return p


def _options(args: argparse.Namespace) -> run.Options:
    mode = SMOKE if args.smoke else FULL
    suffix = "-smoke" if args.smoke else ""
    flood = mode["flood"] if args.flood is None else args.flood
    window = mode["window"] if args.window is None else args.window
    if not 1 <= flood <= 500:
        raise SystemExit("make demo: --flood must be 1-500 (the queue holds 1000)")
    if not 0 <= window <= 600:
        raise SystemExit("make demo: --window must be 0-600 seconds")
    return run.Options(
        workdir=(args.workdir or CACHE / f"demo{suffix}").resolve(),
        state_dir=(args.state_dir or CACHE / f"cluster-demo{suffix}").resolve(),
        nodes=args.nodes,
        flood=flood,
        window=window,
        smoke=args.smoke,
    )


def _pods_mode(args: argparse.Namespace) -> tuple[str, str]:
    """("real" or "kwok", why) for the --pods choice."""
    wanted = args.pods or ("kwok" if args.smoke else "auto")
    if wanted == "kwok":
        return "kwok", "KWOK nodes (--pods kwok)"
    try:
        real_pods.check_machine()
    except real_pods.Unavailable as e:
        if wanted == "real":
            raise SystemExit(f"make demo: --pods real, but real pods cannot run here: {e}") from e
        return "kwok", f"KWOK nodes: real pods cannot run here ({e})"
    return "real", "real pods on a real node"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = _options(args)
    pods, why = _pods_mode(args)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_signalled)
    try:
        run.clean_workdir(opts.workdir)
    except waiting.DemoError as e:
        print(f"make demo: {e}", file=sys.stderr)
        return 2
    steps = realpods.STEPS if pods == "real" else STEPS
    out = console.Console(steps=steps)
    mode = "smoke mode: " if opts.smoke else ""
    out.title(
        "Pilothouse demo: the customer-support agent of the original write-up, end to end",
        f"mode: {why}; {mode}{opts.flood} requests in the flood, {opts.window} s scale-down"
        f" window; logs in {run._rel(opts.workdir)}/ and {run._rel(opts.state_dir)}/logs/",
    )
    procs = stack.Stack(opts.workdir)
    code, timings = 1, ""
    try:
        if pods == "real":
            realpods.demo(opts, out, procs)
        else:
            agent = run.setup(opts, out, procs)
            talk = scenes.converse(agent)
            scenes.look_inside(agent, talk)
            scenes.flood(agent)
        code = 0
        timings = out.timings()
    except (waiting.DemoError, real_pods.Unavailable) as e:
        out.failed(str(e))
    except KeyboardInterrupt:
        out.failed("interrupted (Ctrl-C)")
        code = 130
    except _Signalled as e:
        out.failed(f"stopped by signal {signal.Signals(e.signum).name}")
        code = 128 + e.signum
    except Exception as e:  # a launcher's error (a port, a binary): say which, keep the trace
        trace = opts.workdir / "logs" / "demo-error.log"
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(traceback.format_exc())
        out.failed(f"{type(e).__name__}: {e}\n  (traceback in {run._rel(trace)})")
    finally:
        _teardown(out, procs)
    if code == 0:
        out.plain()
        out.plain(out.bold(f"Demo complete: all {steps} steps worked."))
        out.plain(f"Mode: {why}.")
        out.block(timings)
    return code


def _teardown(out: console.Console, procs: stack.Stack) -> None:
    """Stop everything, ignoring further Ctrl-C / SIGTERM until done."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    out.plain()
    out.plain("Stopping everything the demo started...")
    started = time.monotonic()
    try:
        procs.close()
    except Exception as e:
        out.failed(f"while stopping: {type(e).__name__}: {e}")
    took = time.monotonic() - started
    out.plain(f"  stopped: {', '.join(procs.stopped) or 'nothing was running'} ({took:.1f} s)")
    left = _children()
    if left:
        out.failed(f"processes still running after the teardown: {', '.join(left)}")
    else:
        out.plain("  no process left behind")


def _children() -> list[str]:
    """Live processes whose parent is this one (Linux /proc), as ``pid name``."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = (
            stat[stat.index("(") + 1 : stat.rindex(")")],
            stat[stat.rindex(")") + 2 :].split(),
        )
        state, ppid = rest[0], int(rest[1])
        if ppid == me and state != "Z":
            found.append(f"{entry.name} {name}")
    return found
