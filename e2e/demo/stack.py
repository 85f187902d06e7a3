"""The processes the demo starts, and the guarantee that every one of them ends.

``make demo`` starts a Kubernetes control plane (``e2e/cluster``), Redis and PostgreSQL
(:mod:`pilothouse.runtime.devservers`), the mock LLM, the tool server, the operator and two
runtime processes. :class:`Stack` starts each through its own launcher and registers its stop
on one :class:`contextlib.ExitStack`, so :meth:`Stack.close` (run from ``finally`` by
:mod:`demo.cli`, on success, failure and Ctrl-C alike) stops them in reverse order. Each
launcher already escalates SIGTERM to SIGKILL after a grace period.

The operator is started here too (:class:`OperatorProcess`): as a pod would run it, with the
chart's arguments, but as a local process whose kubeconfig carries the chart ServiceAccount's
token, since KWOK's nodes run no containers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster import launcher

from demo import waiting
from pilothouse.runtime import config, devservers, testing
from pilothouse.runtime.evaluation import toolserver
from pilothouse.runtime.mockllm import process as mockllm

__all__ = ["OperatorProcess", "Stack"]

OPERATOR_START_TIMEOUT = 60.0
OPERATOR_STOP_GRACE = 20.0


class OperatorProcess:
    """``pilothouse-operator`` as a child process with its own kubeconfig and log file."""

    def __init__(self, argv: Sequence[str], *, kubeconfig: Path, log_file: Path, health_port: int):
        self.argv = [sys.executable, "-m", "pilothouse.operator.cli", *argv]
        self.kubeconfig = kubeconfig
        self.log_file = log_file
        self.health_port = health_port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return -1 if self._proc is None else self._proc.pid

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_ID": "pilothouse-demo"}
        env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster config
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        waiting.wait_for(
            self._healthy,
            bool,
            what="the operator's /healthz",
            timeout=OPERATOR_START_TIMEOUT,
            describe=lambda _: f"no answer; log {self.log_file}:\n{self.log_tail()}",
        )
        return self

    def _healthy(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise waiting.DemoError(
                f"the operator exited with {self._proc.returncode}:\n{self.log_tail()}"
            )
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM (Kopf finishes its handlers), SIGKILL after a grace period."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=OPERATOR_STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Stack:
    """Every process of one demo run; :meth:`close` stops them all, newest first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._exit = contextlib.ExitStack()
        self.stopped: list[str] = []

    def _on_close(self, name: str, stop: Any) -> None:
        def run() -> None:
            stop()
            self.stopped.append(name)

        self._exit.callback(run)

    def close(self) -> None:
        """Stop everything started so far (idempotent)."""
        self._exit.close()

    # ----------------------------------------------------------------------- services

    def real_stack(self, state_dir: Path, workdir: Path) -> Any:
        """The real-node stack of e2e/real_pods.py (``--pods real``), stopped by close()."""
        import real_pods  # only this mode needs it (Docker, the chart, the real node)

        context = real_pods.real_stack(state_dir, workdir)
        stack = context.__enter__()
        self._on_close("real node, services and chart", lambda: context.__exit__(None, None, None))
        return stack

    def cluster(self, state_dir: Path, *, nodes: int, log: Any) -> launcher.Cluster:
        cluster = launcher.Cluster(state_dir, nodes=nodes, log=log)
        self._on_close("control plane", cluster.stop)
        return cluster.start()

    def redis(self) -> devservers.RedisServer:
        server = devservers.RedisServer()
        self._on_close("Redis", server.close)
        return server.start()

    def postgres(self) -> devservers.PostgresServer:
        server = devservers.PostgresServer()
        self._on_close("PostgreSQL", server.close)
        return server.start()

    def mock_llm(self, *, scenario: Path, api_key: str) -> mockllm.MockLLMProcess:
        llm = mockllm.MockLLMProcess(scenario=scenario, api_key=api_key, seed=0)
        self._on_close("mock LLM", llm.stop)
        return llm.start()

    def tool_server(self) -> toolserver.ToolServerProcess:
        tools = toolserver.ToolServerProcess()
        self._on_close("tool server", tools.stop)
        return tools.start()

    def operator(
        self, argv: Sequence[str], *, kubeconfig: Path, health_port: int
    ) -> OperatorProcess:
        proc = OperatorProcess(
            argv,
            kubeconfig=kubeconfig,
            log_file=self.logs / "operator.log",
            health_port=health_port,
        )
        self._on_close("operator", proc.stop)
        return proc.start()

    def runtime(
        self, cfg: config.RuntimeConfig, *, role: str, env: Mapping[str, str]
    ) -> testing.RuntimeProcess:
        """``pilothouse serve --role ROLE``; its log is ``runtime-ROLE/runtime.log``."""
        proc = testing.RuntimeProcess(
            cfg, role=role, env=env, workdir=self.workdir / f"runtime-{role}"
        )
        self._on_close(f"runtime ({role})", proc.close)
        return proc.start()
