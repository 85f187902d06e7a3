"""``make demo`` with real pods: on a machine that can run them it says so, runs the chart's
operator pod and the agent's pods, answers through the Service, shows the history and scales
real replicas up and back down, exits 0 and leaves nothing behind.

Runs ``python -m demo --pods real`` as a subprocess in this test's folders (its own control plane
and real node, beside the session's). Skips with the reason where real pods cannot run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import real_pods

pytestmark = pytest.mark.real_pods

E2E_DIR = Path(__file__).resolve().parent
FLOOD = 25


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: the kubelet's unix sockets live under the state dir."""
    folder = Path(tempfile.mkdtemp(prefix="ph-demo-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_demo_runs_real_pods_end_to_end(short_dir: Path) -> None:
    try:
        real_pods.check_machine()
    except real_pods.Unavailable as e:
        if os.environ.get(real_pods.MODE_ENV) == "1":
            pytest.fail(f"{real_pods.MODE_ENV}=1 but real pods cannot run here: {e}")
        pytest.skip(f"real pods cannot run here: {e}")
    path = os.pathsep.join(filter(None, [str(E2E_DIR), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "COLUMNS": "120"}
    argv = [sys.executable, "-m", "demo", "--pods", "real", f"--flood={FLOOD}", "--window=5"]
    argv += ["--workdir", str(short_dir / "work"), "--state-dir", str(short_dir / "c")]

    proc = subprocess.run(
        argv, cwd=E2E_DIR.parent, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = proc.stdout

    assert proc.returncode == 0, f"{out[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert "mode: real pods on a real node" in out
    assert re.findall(r"^\[(\d)/5\] ", out, re.M) == ["1", "2", "3", "4", "5"]
    assert re.search(
        r"pilothouse-operator-\S+\s+1/1\s+Running\s+\d+\s+\S+\s+\S+\s+real-node-0", out
    )
    assert re.search(
        r"pod/customer-support-\S+\s+1/1\s+Running\s+\d+\s+\S+\s+\S+\s+real-node-0", out
    )
    assert "2+2 = 4" in out
    assert "Right now in Tokyo it is sunny" in out
    assert "return id RET-12345" in out
    assert "I'm sorry, but I can't help with that request." in out
    assert re.search(r"\s4\s+answer\s", out)  # the history of the weather question
    ready = [int(n) for n in re.findall(r"replicas \d+, ready pods (\d+)", out)]
    assert max(ready) >= 2  # real replicas joined ...
    assert ready[-1] == 1  # ... and went again
    assert f"all {FLOOD} requests answered" in out
    assert "ScaledUp" in out
    assert "ScaledDown" in out
    assert "no process left behind" in out
    assert "Demo complete: all 5 steps worked." in out
