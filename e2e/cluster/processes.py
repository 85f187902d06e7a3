"""Process groups with a pid file: start local servers and make sure they all end.

The launcher starts five long-running processes per cluster. Each gets its own process
group (so a signal reaches everything it might spawn) and is recorded in a pid file, so
that ``terminate()`` can end them even from a later Python process (``launcher.py down``,
or the next ``up`` after a crash). A pid is only signalled while its command line still
contains the owner's marker (the state directory): pid files outlive processes, and pids
are reused.

Processes started with ``die_with_parent`` also get ``PR_SET_PDEATHSIG`` (Linux), so
they are killed even when the Python process that started them is SIGKILLed. A real node's
processes (containerd, kubelet, kube-proxy) are started inside the node's network namespace
(``netns``: ``setns(2)`` in the child before exec, nothing else of the host changes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel for SIGKILL when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def enter_netns(path: Path) -> None:
    """Move the calling thread into the network namespace pinned at ``path`` (setns(2))."""
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _child_setup(die_with_parent: bool, netns: Path | None) -> Callable[[], None] | None:
    if not die_with_parent and netns is None:
        return None

    def setup() -> None:
        if netns is not None:
            enter_netns(netns)
        if die_with_parent:
            _die_with_parent()

    return setup


def install_exit_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so ``atexit`` and ``finally`` blocks run.

    Handlers someone else installed are kept; outside the main thread this does nothing.
    """

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, handler)


class ProcessGroups:
    """Named processes, each in its own group, recorded in ``pid_file``."""

    def __init__(self, pid_file: Path, marker: str) -> None:
        self.pid_file = pid_file
        self.marker = marker
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _read(self) -> dict[str, int]:
        try:
            data: dict[str, int] = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def _ours(self, pid: int) -> bool:
        return alive(pid) and self.marker in _cmdline(pid)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_file: Path,
        cwd: Path,
        die_with_parent: bool,
        netns: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_child_setup(die_with_parent, netns),
                env=env,
            )
        self._procs[name] = proc
        pids = self._read()
        pids[name] = proc.pid
        self.pid_file.write_text(json.dumps(pids, indent=2))
        return proc

    def exit_code(self, name: str) -> int | None:
        """The exit code of a process this object started, None while it runs."""
        proc = self._procs.get(name)
        return None if proc is None else proc.poll()

    def states(self) -> dict[str, str]:
        return {n: ("running" if self._ours(p) else "dead") for n, p in self._read().items()}

    def terminate(self, batches: Iterable[Sequence[str]], grace: float) -> None:
        """SIGTERM each batch of groups in turn, SIGKILL what outlives ``grace`` seconds.

        Also ends what an earlier process recorded in the pid file; then removes their
        entries (the file goes when it is empty).
        """
        pids = self._read()
        for name, proc in self._procs.items():
            pids.setdefault(name, proc.pid)
        batches = [list(batch) for batch in batches]
        for batch in batches:
            victims = [pids[n] for n in batch if n in pids and self._ours(pids[n])]
            self._signal(victims, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while any(alive(p) for p in victims) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)
            self._signal([p for p in victims if alive(p)], signal.SIGKILL)
        ended = {name for batch in batches for name in batch}
        for name in ended & self._procs.keys():  # collect exit codes: no zombies, no warnings
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._procs.pop(name).wait(timeout=grace)
        left = {n: p for n, p in self._read().items() if n not in ended}
        if left:
            self.pid_file.write_text(json.dumps(left, indent=2))
        else:
            self.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)

    def _reap(self) -> None:
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0)
