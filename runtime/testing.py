"""Start ``pilothouse serve`` as a real process, for tests, benchmarks and evaluations.

Integration tests kill runtime processes (SIGKILL mid-request, SIGTERM to drain), so a runtime
under test must be a separate process started exactly as in a pod::

    with RuntimeProcess(cfg, role="all", env={"PILOTHOUSE_REDIS_URL": redis_url}) as rt:
        httpx.post(f"{rt.url}/v1/requests?wait=5", json={"input": "What is 2+2?"})
        rt.terminate()                     # SIGTERM: drains
        assert rt.wait() == 0

The config is written to a file in a private folder (the audit spool goes there too unless
the config names one), the process listens on a free loopback port, and :meth:`start` returns
once ``/readyz`` answers 200. Its JSON log lines are kept in a file (:meth:`logs`).
:meth:`stop` always cleans up, also when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx
import orjson

from pilothouse.runtime import config, devservers, errors

__all__ = ["DEFAULT_START_TIMEOUT", "RuntimeProcess"]

DEFAULT_START_TIMEOUT: Final = 30.0
_DEFAULT_SPOOL: Final = config.AuditConfig().spool_dir


class RuntimeProcess:
    """One ``pilothouse serve`` process on a loopback port."""

    def __init__(
        self,
        cfg: config.RuntimeConfig | Mapping[str, Any],
        *,
        role: str = "all",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        python: str = sys.executable,
    ) -> None:
        self.cfg = cfg if isinstance(cfg, config.RuntimeConfig) else config.parse_config(cfg)
        self.role = role
        self.env = dict(env or {})
        self.port = port or devservers.free_port()
        self._owns_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pilothouse-runtime-"))
        self.start_timeout = start_timeout
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # ------------------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise errors.RuntimeFailure("the runtime process is not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path:
        return self.workdir / "runtime.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "runtime.json"

    # ------------------------------------------------------------------------ life cycle

    def _document(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.audit.spool_dir == _DEFAULT_SPOOL:
            spool = str(self.workdir / f"spool-{self.port}")
            cfg = cfg.model_copy(
                update={"audit": cfg.audit.model_copy(update={"spool_dir": spool})}
            )
        return cfg.to_document()

    def argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "pilothouse.runtime.cli",
            "serve",
            "--config",
            str(self.config_file),
            "--role",
            self.role,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self, *, wait_ready: bool = True) -> Self:
        """Start the process; with ``wait_ready`` return once ``/readyz`` says 200."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_bytes(orjson.dumps(self._document(), option=orjson.OPT_INDENT_2))
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until ``/readyz`` answers 200; :class:`errors.RuntimeFailure` with the log."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        last = "no answer"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise errors.RuntimeFailure(
                        f"pilothouse serve exited with {self.returncode}:\n{self.output()}"
                    )
                try:
                    r = client.get(f"{self.url}/readyz")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text}"
                except httpx.HTTPError as e:
                    last = repr(e)
                time.sleep(0.05)
        raise errors.RuntimeFailure(
            f"runtime not ready after its start timeout: {last}\n{self.output()}"
        )

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def terminate(self) -> None:
        """SIGTERM: the runtime drains and exits."""
        if self.running and self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the runtime dies mid-work (its entries stay pending for other replicas)."""
        if self.running and self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, waiting up to ``timeout`` seconds for it."""
        if self._proc is None:
            raise errors.RuntimeFailure("the runtime process is not started")
        return self._proc.wait(timeout)

    def stop(self, *, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Idempotent."""
        code = None
        if self._proc is not None:
            if self.running:
                self.terminate()
                try:
                    code = self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self._proc.pid, signal.SIGKILL)
                    code = self._proc.wait()
            else:
                code = self._proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def close(self) -> None:
        """Stop and remove the private folder."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --------------------------------------------------------------------------- output

    def output(self, lines: int = 40) -> str:
        """The last lines of the process's log."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def logs(self) -> list[dict[str, Any]]:
        """The process's JSON log events so far (lines that are not JSON are skipped)."""
        out = []
        try:
            raw = self.log_file.read_bytes()
        except OSError:
            return []
        for line in raw.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out
