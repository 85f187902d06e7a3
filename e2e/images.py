"""Build the Pilothouse image the way the image tests do, and hand it to real nodes.

Used by e2e/real_pods.py (the real-pod tests) and the demo's real-pod mode. Docker is the one
that answers, or (root with apt-get) a daemon ``docker/dockerd.sh`` installs and starts; without
a registry the base is the debootstrapped bookworm of ``docker/base-image.sh``
(``PILOTHOUSE_TEST_BASE_IMAGE`` names another). The image is tagged with the chart's
``appVersion`` (``pilothouse:0.1.0``), which is also the operator's default runtime image, so
neither the chart nor the agents need an image override.

``save()`` writes ``docker save`` archives into ``.cache/images/`` and reuses one while the
image ID is the same; a real node imports it with ``Cluster.load_image``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cluster import binaries

REPO_ROOT = binaries.REPO_ROOT
CACHE = REPO_ROOT / ".cache" / "images"
LOCAL_BASE = "pilothouse-base:bookworm-py311"
BASE_ENV = "PILOTHOUSE_TEST_BASE_IMAGE"


class ImageError(RuntimeError):
    """Docker cannot run here, or a build step failed (the message has its output)."""


def _app_version() -> str:
    for line in (REPO_ROOT / "charts" / "pilothouse" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise ImageError("charts/pilothouse/Chart.yaml has no appVersion")


IMAGE = f"pilothouse:{_app_version()}"


def _run(*args: str, timeout: float = 1200) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ImageError(
            f"{' '.join(args[:4])}... exited {proc.returncode}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return proc.stdout


def ensure_docker() -> bool:
    """A Docker daemon that answers; True when this call started it (docker/dockerd.sh)."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    ):
        return False
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ImageError("no Docker daemon answers, and installing one needs root and apt-get")
    return _run(str(REPO_ROOT / "docker" / "dockerd.sh"), "start").strip() == "started"


def stop_docker() -> None:
    """Stop the daemon docker/dockerd.sh started (nothing if someone else runs it)."""
    subprocess.run([str(REPO_ROOT / "docker" / "dockerd.sh"), "stop"], capture_output=True)


def base_image() -> str:
    if base := os.environ.get(BASE_ENV):
        return base
    if os.geteuid() == 0 and shutil.which("debootstrap"):
        _run(str(REPO_ROOT / "docker" / "base-image.sh"), LOCAL_BASE, timeout=900)
        return LOCAL_BASE
    return "python:3.11-slim"


def build(tag: str = IMAGE) -> str:
    """``docker build`` of this working tree (layers cached by Docker); returns the tag."""
    _run(
        "docker", "build", "--network", "host", "--force-rm",
        "--build-arg", f"BASE_IMAGE={base_image()}", "-t", tag, str(REPO_ROOT),
    )  # fmt: skip
    return tag


def image_id(tag: str = IMAGE) -> str:
    return _run("docker", "image", "inspect", "-f", "{{.Id}}", tag).strip()


def save(tag: str = IMAGE) -> Path:
    """A ``docker save`` archive of ``tag`` in .cache/images/, written again only when the
    image changed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name = tag.replace(":", "-").replace("/", "-")
    archive, id_file = CACHE / f"{name}.tar", CACHE / f"{name}.id"
    current = image_id(tag)
    if not (archive.exists() and id_file.exists() and id_file.read_text() == current):
        partial = archive.with_suffix(".tar.partial")
        _run("docker", "save", "-o", str(partial), tag)
        partial.replace(archive)
        id_file.write_text(current)
    return archive
