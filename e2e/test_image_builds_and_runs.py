"""The Pilothouse image builds, holds both entry points, runs unprivileged and serves an agent.

Builds the Dockerfile from this working tree, then runs the image the way the chart and the
operator run it: as UID 10001 with a read-only root file system, no capabilities and no
privilege escalation, with tmpfs where the operator mounts emptyDirs. ``pilothouse serve`` gets a
real Redis and PostgreSQL (local servers, reached over the host network) and must answer
``/healthz``, then drain and exit 0 on SIGTERM, which it only does if the process handles
signals as PID 1.

Docker: used when a daemon answers. Otherwise, as root on a machine with apt (fresh CI), the
module installs docker.io and debootstrap and starts a daemon (docker/dockerd.sh), and stops
that daemon again at the end. Without a registry, the base is a debootstrapped Debian bookworm
with Python 3.11 (docker/base-image.sh). Measured on a busy 2-core machine, cold: packages
~10 s, base image 41-66 s, image build ~55 s (~35 s after a source change), so these tests run
by default. Environment: PILOTHOUSE_TEST_IMAGE=0 skips them, =1 fails instead of skipping when
Docker cannot run; PILOTHOUSE_TEST_BASE_IMAGE names a base to use instead (e.g.
python:3.11-slim where it can be pulled).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import helm_chart
import images
import pytest
import yaml
from polling import wait_until

from pilothouse.runtime import devservers

REPO_ROOT = helm_chart.REPO_ROOT
IMAGE = "pilothouse:e2e"
MODE_ENV = "PILOTHOUSE_TEST_IMAGE"
UID = "10001"
# How the chart and the operator run the image (restricted Pod Security Standard).
RESTRICTED_RUN = [
    "--user", f"{UID}:{UID}", "--read-only", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    # The operator's emptyDirs (operator/manifests.py): /tmp and the audit spool.
    "--tmpfs", f"/tmp:uid={UID},gid={UID}",
    "--tmpfs", f"/var/lib/pilothouse/spool:uid={UID},gid={UID},mode=0700",
]  # fmt: skip


def _run(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        raise AssertionError(f"{' '.join(args[:4])}... exited {proc.returncode}\n{output}")
    return proc


def _unavailable(reason: str) -> None:
    if os.environ.get(MODE_ENV) == "1":
        pytest.fail(f"{MODE_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_daemon() -> Iterator[str]:
    """A Docker daemon that answers; started (and later stopped) here when needed."""
    if os.environ.get(MODE_ENV) == "0":
        pytest.skip(f"{MODE_ENV}=0")
    started = False
    if not (shutil.which("docker") and _run("docker", "info", check=False).returncode == 0):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            _unavailable("no Docker daemon, and installing one needs root and apt-get")
        proc = _run(str(REPO_ROOT / "docker" / "dockerd.sh"), "start", check=False)
        if proc.returncode != 0:
            _unavailable(f"docker/dockerd.sh could not start Docker: {proc.stderr.strip()}")
        started = proc.stdout.strip() == "started"
    try:
        yield "docker"
    finally:
        if started:
            _run(str(REPO_ROOT / "docker" / "dockerd.sh"), "stop", check=False)


@pytest.fixture(scope="module")
def image(docker_daemon: str) -> str:
    """The Dockerfile built as e2e/images.py builds it (the real-pod tests use the same)."""
    try:
        return images.build(IMAGE)
    except images.ImageError as e:
        raise AssertionError(str(e)) from e


def docker_run(image: str, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run("docker", "run", "--rm", *RESTRICTED_RUN, image, *command, timeout=timeout)


def test_image_runs_as_an_unprivileged_numeric_user(image: str) -> None:
    config = json.loads(_run("docker", "image", "inspect", image).stdout)[0]["Config"]

    assert config["User"] == f"{UID}:{UID}"
    assert _run("docker", "run", "--rm", image, "id", "-u").stdout.strip() == UID


@pytest.mark.parametrize(
    ("entry_point", "usage"),
    [("pilothouse", "usage: pilothouse"), ("pilothouse-operator", "usage: pilothouse-operator")],
)
def test_both_entry_points_start(image: str, entry_point: str, usage: str) -> None:
    result = docker_run(image, entry_point, "--help")

    assert usage in result.stdout


def test_final_image_holds_no_build_tools_or_caches(image: str) -> None:
    found = docker_run(
        image, "sh", "-c",
        "ls -d /src /wheels /opt/wheel-build /opt/pilothouse/bin/pip* /root/.cache/pip "
        "/tmp/pip-* 2>/dev/null; for t in gcc cc make git; do command -v $t; done; true",
    ).stdout.split()  # fmt: skip

    assert found == []


@pytest.fixture
def redis() -> Iterator[devservers.RedisServer]:
    with devservers.RedisServer() as server:
        yield server.start()


@pytest.fixture
def postgres() -> Iterator[devservers.PostgresServer]:
    with devservers.PostgresServer() as server:
        yield server.start()


def test_runtime_serves_healthz_and_drains_on_sigterm(
    image: str, redis: devservers.RedisServer, postgres: devservers.PostgresServer, tmp_path: Path
) -> None:
    port = devservers.free_port()
    config = {
        "agent": "image-check",
        "model": {"endpoint": "http://127.0.0.1:9/v1", "name": "unused"},
        "server": {"port": port},
    }
    (tmp_path / "runtime.yaml").write_text(yaml.safe_dump(config))
    tmp_path.chmod(0o755)
    (tmp_path / "runtime.yaml").chmod(0o644)
    name = f"pilothouse-e2e-{uuid.uuid4().hex[:8]}"
    _run(
        "docker", "run", "-d", "--name", name, "--network", "host", *RESTRICTED_RUN,
        "-v", f"{tmp_path}:/etc/pilothouse:ro", "-e", f"PILOTHOUSE_REDIS_URL={redis.url}",
        "-e", f"PILOTHOUSE_POSTGRES_DSN={postgres.dsn}",
        image, "pilothouse", "serve", "--config", "/etc/pilothouse/runtime.yaml",
    )  # fmt: skip
    try:

        def healthz() -> int | str:
            if _run("docker", "inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
                return "exited: " + _run("docker", "logs", name).stderr[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return int(r.status)
            except (urllib.error.URLError, OSError) as e:
                return str(e)

        status = wait_until(
            healthz, lambda s: s == 200 or str(s).startswith("exited"), what="/healthz"
        )
        assert status == 200, status
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"pilothouse_" in r.read()

        _run("docker", "stop", "--time", "30", name, timeout=60)
        state = json.loads(_run("docker", "inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, _run("docker", "logs", name).stderr[-2000:]
    finally:
        _run("docker", "rm", "-f", name, check=False)
