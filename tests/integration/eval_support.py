"""Shared pieces of the evaluation harness's integration tests.

Module-scoped fixtures (import them into a test module to use them): the mock LLM speaking the
shipped ``customer_support_v1`` scenario, the same scenario with every tool call removed (a
model that "forgot" how to use tools), the evaluation tool server, and runtime configs that
point at them. Configs are the shipped ``customer_support_v1.runtime.yaml`` with the URLs of
the servers started here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.runtime import config
from pilothouse.runtime.evaluation import toolserver
from pilothouse.runtime.mockllm.process import MockLLMProcess
from pilothouse.runtime.testing import RuntimeProcess

DATASETS = Path(__file__).resolve().parents[2] / "runtime" / "evaluation" / "datasets"
SCENARIO = DATASETS / "customer_support_v1.scenario.yaml"
RUNTIME_CONFIG = DATASETS / "customer_support_v1.runtime.yaml"
DATASET = DATASETS / "customer_support_v1.jsonl"
SHIPPED_TOOL_URL = f"http://127.0.0.1:{toolserver.DEFAULT_PORT}"
TOKEN = "eval-test-token"
"""The bearer token the served runtimes accept."""


def scenario_without_tools(path: Path) -> Path:
    """The shipped scenario minus every rule that calls a tool, written to ``path``."""
    data = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    data["name"] = "customer_support_v1-no-tools"
    data["rules"] = [r for r in data["rules"] if not r.get("tool_calls")]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def runtime_config(
    path: Path, *, llm_url: str, tools_url: str, agent: str = "customer-support", **top: Any
) -> Path:
    """The shipped runtime config pointed at these servers (and ``top`` keys replaced)."""
    data = yaml.safe_load(RUNTIME_CONFIG.read_text(encoding="utf-8"))
    data["agent"] = agent
    data["model"]["endpoint"] = llm_url
    for tool in data["tools"]:
        tool["url"] = tool["url"].replace(SHIPPED_TOOL_URL, tools_url)
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def pilothouse(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``pilothouse`` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.runtime.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def cli() -> Any:
    """:func:`pilothouse`, for test modules that load this module as a plugin."""
    return pilothouse


@pytest.fixture(scope="module")
def support_llm() -> Iterator[MockLLMProcess]:
    """The mock LLM answering as the shipped scenario says."""
    with MockLLMProcess(scenario=SCENARIO) as llm:
        yield llm


@pytest.fixture(scope="module")
def forgetful_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLMProcess]:
    """The mock LLM with the shipped scenario's tool calls removed."""
    scenario = scenario_without_tools(tmp_path_factory.mktemp("scenario") / "no-tools.yaml")
    with MockLLMProcess(scenario=scenario) as llm:
        yield llm


@pytest.fixture(scope="module")
def eval_tool_server() -> Iterator[toolserver.ToolServerProcess]:
    """The evaluation tool server (weather, returns)."""
    with toolserver.ToolServerProcess() as server:
        yield server


@pytest.fixture(scope="module")
def support_config(
    tmp_path_factory: pytest.TempPathFactory,
    support_llm: MockLLMProcess,
    eval_tool_server: toolserver.ToolServerProcess,
) -> Path:
    """A runtime config of the support agent on the well-behaved mock LLM."""
    folder = tmp_path_factory.mktemp("config")
    return runtime_config(
        folder / "good.yaml",
        llm_url=support_llm.url,
        tools_url=eval_tool_server.url,
        agent=f"support-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture(scope="module")
def forgetful_config(
    tmp_path_factory: pytest.TempPathFactory,
    forgetful_llm: MockLLMProcess,
    eval_tool_server: toolserver.ToolServerProcess,
) -> Path:
    """A runtime config of the support agent on the mock LLM that never calls tools."""
    folder = tmp_path_factory.mktemp("config")
    return runtime_config(
        folder / "forgetful.yaml",
        llm_url=forgetful_llm.url,
        tools_url=eval_tool_server.url,
        agent=f"forgetful-{uuid.uuid4().hex[:8]}",
    )


def _serve(config_file: Path, redis_url: str, folder: Path) -> Iterator[str]:
    tokens = folder / "tokens"
    tokens.write_text(f"{TOKEN} eval submit\n")
    cfg = config.load_config(config_file)
    cfg = cfg.model_copy(
        update={"server": cfg.server.model_copy(update={"auth_tokens_file": str(tokens)})}
    )
    with RuntimeProcess(cfg, env={"PILOTHOUSE_REDIS_URL": redis_url}) as runtime:
        yield runtime.url


@pytest.fixture(scope="module")
def runtime_url(
    support_config: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``pilothouse serve`` of the support agent on the well-behaved model (token: TOKEN)."""
    yield from _serve(support_config, redis_url, tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def forgetful_runtime_url(
    forgetful_config: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``pilothouse serve`` of the support agent on the model without tools (token: TOKEN)."""
    yield from _serve(forgetful_config, redis_url, tmp_path_factory.mktemp("runtime"))
