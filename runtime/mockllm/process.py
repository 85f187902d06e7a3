"""Start the mock LLM as a real server process, and steer it over its admin API.

Tests, benchmarks and the demo talk to the mock LLM over HTTP like to any OpenAI-compatible
endpoint; this module is how they get one::

    with MockLLMProcess(seed=1) as llm:            # a free loopback port
        client = openai_compatible_client(base_url=llm.url, api_key="unused")
        llm.admin.set_faults(error_rate=1.0, error_status=503, models=["primary"])
        ...
        assert llm.admin.stats()["by_model"]["primary"] == 3

The process runs ``python -m pilothouse.runtime.mockllm --port 0`` and reads the port from the
line it prints once it accepts connections. :meth:`MockLLMProcess.stop` always cleans up (also
when the object is forgotten: a finalizer kills the process), and the server can be stopped and
started again on the same port to take the LLM away mid-test.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self, TypedDict

import httpx
import orjson

from pilothouse.runtime import processes
from pilothouse.runtime.mockllm import command, errors, faults

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "AdminClient",
    "MockLLMProcess",
    "StatsSnapshot",
]

DEFAULT_START_TIMEOUT: Final = 20.0
DEFAULT_STOP_TIMEOUT: Final = processes.DEFAULT_STOP_TIMEOUT
_OUTPUT_LINES: Final = 200
_READY: Final = re.compile(re.escape(command.READY_PREFIX) + r"(http://\S+)")


class StatsSnapshot(TypedDict):
    """``GET /admin/stats``: counters since start or the last reset."""

    total: int
    in_flight: int
    by_path: dict[str, int]
    by_model: dict[str, int]
    by_outcome: dict[str, int]
    by_status: dict[str, int]
    by_rule: dict[str, int]
    delayed: int
    delayed_ms: float
    by_tool_choice: dict[str, int]


class AdminClient:
    """Synchronous client of a running mock LLM's admin API (raises on a non-2xx answer)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise errors.InvalidRequestError(
                f"{method} {path} answered {response.status_code}: {response.text}"
            )
        return response.json()

    def get_faults(self) -> dict[str, Any]:
        """The fault settings in force."""
        result: dict[str, Any] = self._call("GET", "/admin/faults")
        return result

    def set_faults(
        self, config: faults.FaultConfig | None = None, **settings: Any
    ) -> dict[str, Any]:
        """Replace every fault setting: what is not given is off (see ``FaultConfig`` fields)."""
        body = config.model_dump(mode="json") if config is not None else {}
        result: dict[str, Any] = self._call("PUT", "/admin/faults", json={**body, **settings})
        return result

    def update_faults(self, **changes: Any) -> dict[str, Any]:
        """Change only the given fault settings."""
        result: dict[str, Any] = self._call("PATCH", "/admin/faults", json=changes)
        return result

    def clear_faults(self) -> dict[str, Any]:
        """Turn every fault off."""
        return self.set_faults()

    def stats(self) -> StatsSnapshot:
        """Request counters since start or the last reset."""
        result: StatsSnapshot = self._call("GET", "/admin/stats")
        return result

    def reset(
        self, *, faults: bool = False, scenario: bool = False, seed: int | None = None
    ) -> None:
        """Zero the stats; optionally restore the start faults (and RNG), scenario, or reseed."""
        body: dict[str, Any] = {"faults": faults, "scenario": scenario}
        if seed is not None:
            body["seed"] = seed
        self._call("POST", "/admin/reset", json=body)

    def scenario(self) -> dict[str, Any]:
        """Name, source, models and rule names of the scenario in force."""
        result: dict[str, Any] = self._call("GET", "/admin/scenario")
        return result

    def load_scenario(self, scenario: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
        """Swap the scenario: a file path (``Path``), a mapping, or YAML/JSON text (``str``)."""
        if isinstance(scenario, Mapping):
            content = orjson.dumps(dict(scenario))
            content_type = "application/json"
        elif isinstance(scenario, os.PathLike):
            content = Path(scenario).read_bytes()
            content_type = "application/yaml"
        else:
            content = scenario.encode()
            content_type = "application/yaml"
        result: dict[str, Any] = self._call(
            "PUT", "/admin/scenario", content=content, headers={"content-type": content_type}
        )
        return result

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()


class MockLLMProcess(processes.ChildProcess):
    """A ``pilothouse mock-llm`` server process on a loopback port."""

    description = "the mock LLM"
    ready_pattern = _READY
    output_lines = _OUTPUT_LINES

    def __init__(
        self,
        *,
        scenario: str | os.PathLike[str] | None = None,
        faults: faults.FaultConfig | Mapping[str, Any] | None = None,
        seed: int | None = 0,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        start_timeout: float = DEFAULT_START_TIMEOUT,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
    ) -> None:
        """Configure (not start) a server; ``faults`` and the rest become command-line flags."""
        super().__init__(port=port, start_timeout=start_timeout, stop_timeout=DEFAULT_STOP_TIMEOUT)
        self.scenario = scenario
        self.fault_config = _as_fault_config(faults)
        self.seed = seed
        self.api_key = api_key
        self.host = host
        self.log_level = log_level
        self.extra_args = tuple(extra_args)
        self.python = python
        self._admin: AdminClient | None = None

    # --- addresses ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        if self._ready_url is None:
            raise errors.LaunchError("the mock LLM is not running: call start() first")
        return self._ready_url

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.base_url}/v1"

    @property
    def admin(self) -> AdminClient:
        """The admin client of the running server."""
        if self._admin is None:
            raise errors.LaunchError("the mock LLM is not running: call start() first")
        return self._admin

    # --- life cycle -----------------------------------------------------------------------

    def argv(self) -> list[str]:
        """The command that starts the server."""
        args = [
            self.python,
            "-m",
            "pilothouse.runtime.mockllm",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
        ]
        if self.scenario is not None:
            args += ["--scenario", os.fspath(self.scenario)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        args += command.fault_flags(self.fault_config)
        return args + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop(command.API_KEY_ENV, None)
        if self.api_key is not None:
            env[command.API_KEY_ENV] = self.api_key  # not on the command line, not in ps
        return env

    def failure(self, message: str) -> Exception:
        return errors.LaunchError(message)

    def start(self) -> Self:
        """Start the server and wait until it answers; raise :class:`errors.LaunchError`."""
        return super().start()

    def wait_until_ready(self, deadline: float) -> None:
        url = self.await_ready_line(deadline)
        self._admin = AdminClient(url)
        try:
            response = httpx.get(f"{url}/healthz", timeout=max(1.0, deadline - time.monotonic()))
            response.raise_for_status()
        except httpx.HTTPError as e:
            raise errors.LaunchError(f"the mock LLM at {url} does not answer: {e}") from e

    def stop(self, *, timeout: float | None = None) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL); safe to call any number of times."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        return super().stop(timeout=timeout)


def _as_fault_config(value: faults.FaultConfig | Mapping[str, Any] | None) -> faults.FaultConfig:
    if value is None:
        return faults.FaultConfig()
    if isinstance(value, faults.FaultConfig):
        return value
    return faults.FaultConfig.parse(value)
