"""The local spool: where audit records wait, durable, while PostgreSQL is unreachable.

Why: the worker acknowledges a queue entry only once its records are durable; with PostgreSQL
down that means on local disk. The spool is a folder of append-only JSON-lines segments:
records are appended to ``current.jsonl`` and fsync'd before :meth:`Spool.append` returns;
:meth:`Spool.rotate` closes it into ``seg-<time>-<n>.jsonl``, which the writer replays into
PostgreSQL and then removes. Replay is idempotent (``(agent, request, step)`` is unique), so a
crash mid-replay only means replaying a segment again. A line cut short by a crash is skipped
with a warning (its writer never returned, so its records were never acknowledged).

One process per folder: an exclusive ``flock`` on ``spool.lock``. A segment left by a process
that died is adopted on :meth:`Spool.open`. Blocking file I/O: the writer calls these methods
in a thread (``asyncio.to_thread``), one at a time.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import orjson

from pilothouse.runtime import errors

__all__ = ["Spool"]

log = logging.getLogger(__name__)

CURRENT: Final = "current.jsonl"
LOCK: Final = "spool.lock"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A folder of JSON-lines segments; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock_file: IO[bytes] | None = None
        self._current: IO[bytes] | None = None
        self._current_lines = 0
        self._seq = itertools.count()
        self.pending = 0
        """Records in the spool not yet replayed (for the ``spooled_records`` gauge)."""

    def open(self) -> None:
        """Create the folder, take the lock, adopt what an earlier process left behind."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = (self.directory / LOCK).open("ab")
        except OSError as e:
            raise errors.ConfigError(
                f"audit.spoolDir {self.directory}: cannot use it ({e.strerror})"
            ) from e
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            lock.close()
            raise errors.ConfigError(
                f"audit.spoolDir {self.directory}: another process uses this spool"
            ) from e
        self._lock_file = lock
        self.rotate()
        self.pending = sum(self._count(p) for p in self.segments())

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @staticmethod
    def _count(path: Path) -> int:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records and fsync; when this returns they survive a crash."""
        if not records:
            return
        if self._current is None:
            path = self.directory / CURRENT
            self._current = path.open("ab")
            _fsync_dir(self.directory)
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        self._current.write(data)
        self._current.flush()
        os.fsync(self._current.fileno())
        self._current_lines += len(records)
        self.pending += len(records)

    @property
    def current_empty(self) -> bool:
        """Whether nothing was appended since the last :meth:`rotate`."""
        return self._current_lines == 0

    def rotate(self) -> None:
        """Close the current segment into a numbered one (for replay)."""
        if self._current is not None:
            self._current.close()
            self._current = None
        path = self.directory / CURRENT
        if path.exists():
            if path.stat().st_size > 0:
                name = f"seg-{time.time_ns():020d}-{next(self._seq):06d}.jsonl"
                path.rename(self.directory / name)
            else:
                path.unlink()
            _fsync_dir(self.directory)
        self._current_lines = 0

    def segments(self) -> list[Path]:
        """Closed segments, oldest first."""
        return sorted(self.directory.glob("seg-*.jsonl"))

    def read(self, path: Path, chunk: int) -> Iterator[list[dict[str, Any]]]:
        """The records of a segment in chunks; corrupt lines are skipped with a warning."""
        batch: list[dict[str, Any]] = []
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    batch.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    log.warning("audit spool %s line %d is corrupt; skipped", path.name, number)
                    continue
                if len(batch) >= chunk:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def remove(self, path: Path, records: int) -> None:
        """Forget a replayed segment."""
        path.unlink(missing_ok=True)
        self.pending = max(0, self.pending - records)

    def reject(self, path: Path, records: list[dict[str, Any]]) -> Path:
        """Keep records PostgreSQL rejects beside the spool (``rejected-<segment>``), for a
        person to look at; they no longer block replay."""
        target = path.with_name("rejected-" + path.name)
        with target.open("ab") as f:
            f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        return target
