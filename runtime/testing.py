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
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self

import orjson

from pilothouse.runtime import config, devservers, processes

__all__ = ["DEFAULT_START_TIMEOUT", "RuntimeProcess"]

DEFAULT_START_TIMEOUT: Final = 30.0
DEFAULT_STOP_TIMEOUT: Final = 30.0
_DEFAULT_SPOOL: Final = config.AuditConfig().spool_dir


class RuntimeProcess(processes.ChildProcess):
    """One ``pilothouse serve`` process on a loopback port."""

    description = "pilothouse serve"
    output_lines = 40

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
        super().__init__(
            port=port or devservers.free_port(),
            start_timeout=start_timeout,
            stop_timeout=DEFAULT_STOP_TIMEOUT,
        )
        self.cfg = cfg if isinstance(cfg, config.RuntimeConfig) else config.parse_config(cfg)
        self.role = role
        self.env = dict(env or {})
        self._owns_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pilothouse-runtime-"))
        self.python = python

    # ------------------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def log_path(self) -> Path:
        return self.log_file

    def start(self, *, wait_ready: bool = True) -> Self:
        """Start the process; with ``wait_ready`` return once ``/readyz`` says 200."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_bytes(orjson.dumps(self._document(), option=orjson.OPT_INDENT_2))
        self.spawn()
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until ``/readyz`` answers 200; :class:`errors.RuntimeFailure` with the log."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        self.wait_until_ready(deadline)

    def wait_until_ready(self, deadline: float) -> None:
        self.await_http_ok(f"{self.url}/readyz", deadline)

    def close(self) -> None:
        """Stop and remove the private folder."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --------------------------------------------------------------------------- output

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
