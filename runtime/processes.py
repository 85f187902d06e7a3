"""One way to run a Pilothouse server as a child process: start, wait until ready, stop.

The runtime (:mod:`pilothouse.runtime.testing`), the mock LLM
(:mod:`pilothouse.runtime.mockllm.process`) and the evaluation tool server
(:mod:`pilothouse.runtime.evaluation.toolserver`) are started by tests, benchmarks and the demo
as real processes. :class:`ChildProcess` is what they share: the child runs in its own session
(a Ctrl-C in the terminal does not reach it; signals go to its whole process group), its output
is kept (in memory, or in a log file), readiness is awaited with a deadline (a "listening on
URL" line, or an HTTP endpoint answering 200), and :meth:`ChildProcess.stop` sends SIGTERM, then
SIGKILL, and always cleans up (a finalizer kills a forgotten child). Subclasses give the
command line, the environment, the readiness check and their error type.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Final, Self

import httpx

from pilothouse.runtime import errors

__all__ = ["DEFAULT_STOP_TIMEOUT", "ChildProcess"]

DEFAULT_STOP_TIMEOUT: Final = 10.0
_POLL: Final = 0.05


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class ChildProcess:
    """A server child process; subclasses define :meth:`argv` and how readiness is seen.

    Without a :meth:`log_path` the output is read through a pipe and its last
    ``output_lines`` lines are kept; a line matching ``ready_pattern`` gives the URL (group 1)
    and the port the server listens on.
    """

    description: ClassVar[str] = "the child process"
    ready_pattern: ClassVar[re.Pattern[str] | None] = None
    output_lines: ClassVar[int] = 200

    def __init__(
        self,
        *,
        port: int,
        start_timeout: float,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        self.port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready_url: str | None = None
        self._ready = threading.Event()
        self._lines: collections.deque[str] = collections.deque(maxlen=self.output_lines)
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # --- what subclasses define ------------------------------------------------------------

    def argv(self) -> list[str]:
        """The command that starts the child."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The child's environment (default: this process's, output unbuffered)."""
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def log_path(self) -> Path | None:
        """A file the output is appended to, or None to keep it in memory."""
        return None

    def failure(self, message: str) -> Exception:
        """The error raised when the child does not come up (subclasses pick their family)."""
        return errors.RuntimeFailure(message)

    def wait_until_ready(self, deadline: float) -> None:
        """Return once the child serves; default: its ready line was printed."""
        self.await_ready_line(deadline)

    # --- state ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while running or before the start."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        if self._proc is None:
            raise self.failure(f"{self.description} is not started")
        return self._proc.pid

    def output(self, lines: int | None = None) -> str:
        """The last lines the child printed, for failure messages."""
        count = self.output_lines if lines is None else lines
        path = self.log_path()
        if path is None:
            kept = list(self._lines)
        else:
            try:
                kept = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                return ""
        return "\n".join(kept[-count:]) if count > 0 else ""

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the child and wait until it is ready; stop it again if it does not come up."""
        if self.running:
            return self
        self.spawn()
        try:
            self.wait_until_ready(time.monotonic() + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def spawn(self) -> None:
        """Start the child in its own session without waiting for it."""
        self._ready.clear()
        self._ready_url = None
        self._lines.clear()
        path = self.log_path()
        if path is not None:
            self._log = path.open("ab")
        proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self._log is None else self._log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill_group, proc)
        if proc.stdout is not None:
            self._reader = threading.Thread(
                target=self._read_output,
                args=(proc.stdout,),
                name=f"{type(self).__name__}-output",
                daemon=True,
            )
            self._reader.start()

    def _read_output(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._lines.append(line)
            if self._ready_url is None and self.ready_pattern is not None:
                m = self.ready_pattern.search(line)
                if m is not None:
                    self._ready_url = m.group(1)
                    self._ready.set()

    def _exited(self) -> Exception:
        self._join_reader()  # the last lines explain why
        return self.failure(
            f"{self.description} exited with code {self.returncode}:\n{self.output()}"
        )

    def await_ready_line(self, deadline: float) -> str:
        """Wait for the ready line; its URL (the port it names becomes :attr:`port`)."""
        while not self._ready.wait(_POLL):
            if not self.running:
                raise self._exited()
            if time.monotonic() > deadline:
                raise self.failure(
                    f"{self.description} did not report ready within {self.start_timeout:g}s:\n"
                    f"{self.output()}"
                )
        url = self._ready_url
        assert url is not None
        self.port = int(url.rsplit(":", 1)[1])  # a restart reuses the port
        return url

    def await_http_ok(self, url: str, deadline: float) -> None:
        """Poll ``url`` until it answers 200."""
        last = "no answer"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise self._exited()
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text}"
                except httpx.HTTPError as e:
                    last = repr(e)
                time.sleep(_POLL)
        raise self.failure(
            f"{self.description} not ready within {self.start_timeout:g}s: {last}\n{self.output()}"
        )

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (nothing if it is not running)."""
        if self.running and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM: the child drains and exits."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, and wait for the child to be gone."""
        if self._proc is not None:
            _kill_group(self._proc)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, waiting up to ``timeout`` seconds for it."""
        if self._proc is None:
            raise self.failure(f"{self.description} is not started")
        return self._proc.wait(timeout)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None

    def stop(self, *, timeout: float | None = None) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. The exit code. Idempotent."""
        proc = self._proc
        code = None
        if proc is not None:
            if proc.poll() is None:
                self.terminate()
                try:
                    proc.wait(self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
            code = proc.poll()
            self._join_reader()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._ready_url = None
        return code

    def restart(self) -> Self:
        """Stop and start again (on the same port)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and release what the child used."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
