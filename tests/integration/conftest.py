"""Fixtures of the integration tier beyond tests/conftest.py's servers: the real HTTP tool
server (``weather_api``, ``initiate_return``...) that agents call in these tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent_support import ToolServer


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
