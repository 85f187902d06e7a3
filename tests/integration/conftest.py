"""Fixtures of the integration tier beyond tests/conftest.py's servers: the real HTTP tool
server (``weather_api``, ``initiate_return``...) that agents call in these tests, and
``promtool`` (Prometheus's checker, built from its Go module like the e2e tier's)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from agent_support import ToolServer

_CLUSTER_DIR = Path(__file__).resolve().parents[2] / "e2e" / "cluster"


def _load(name: str) -> ModuleType:
    """A standard-library-only module of e2e/cluster, without putting e2e/ on sys.path."""
    spec = importlib.util.spec_from_file_location(
        f"_pilothouse_cluster_{name}", _CLUSTER_DIR / f"{name}.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {_CLUSTER_DIR / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def promtool() -> object:
    """promtool of the pinned Prometheus (e2e/cluster/versions.env), built when missing."""
    binaries = _load("binaries")
    promtool = _load("promtool")
    return promtool.Promtool(binaries.build_promtool(log=lambda m: print(f"[promtool] {m}")))


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    """A tool server of this test's own: what it received is this test's calls only."""
    with ToolServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_tool_server() -> Iterator[ToolServer]:
    """One tool server for a module, for runtimes that live as long as the module."""
    with ToolServer() as server:
        yield server
