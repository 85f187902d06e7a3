"""The pytest plugin loads in every pytest run (entry point ``pytest11``): it must be registered,
import nothing heavy, and define nothing autouse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pilothouse.runtime import pytest_plugin


def test_the_plugin_is_loaded_from_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("pilothouse")
    assert plugin is not None
    assert plugin.pytest_addoption is pytest_plugin.pytest_addoption
    assert plugin.pilothouse_eval is pytest_plugin.pilothouse_eval
    assert pytestconfig.getoption("pilothouse_url") is None
    assert pytestconfig.getoption("pilothouse_threshold") == 0.8


def test_importing_the_plugin_loads_no_evaluation_or_runtime_modules() -> None:
    code = (
        "import sys, pilothouse.runtime.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pilothouse.runtime.', 'httpx',"
        " 'redis', 'fastapi')) and m != 'pilothouse.runtime.pytest_plugin'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_plugin_defines_no_autouse_fixture(request: pytest.FixtureRequest) -> None:
    # This test asks for no plugin fixture: an autouse one would still be in its closure.
    assert "pilothouse_eval" not in request.fixturenames
    assert [name for name in request.fixturenames if "pilothouse" in name] == []
