"""The mock LLM: a scripted, fault-injecting, OpenAI-compatible Chat Completions server.

It is the one test double of the project, and a real HTTP server: tests, benchmarks and the
demo start it with :class:`MockLLMProcess` (or ``pilothouse mock-llm``) and talk to it like to
any OpenAI-compatible endpoint. What it answers comes from a scenario file (ordered rules, see
:mod:`~pilothouse.runtime.mockllm.scenarios`); what goes wrong (latency, errors, 429s, hangs,
malformed bodies, optionally for some models only) from fault settings that can change at run
time through ``/admin/faults``.

Modules: ``completions`` and ``responses`` (wire format), ``scenarios`` and ``templates``
(answers), ``faults`` (fault decisions), ``stats`` (counters) are pure; ``server`` is the ASGI
app on uvicorn, ``command`` the command line, ``process`` the launcher.
"""

from __future__ import annotations

from pilothouse.runtime.mockllm.errors import (
    FaultConfigError,
    InvalidRequestError,
    LaunchError,
    MockLLMError,
    ScenarioError,
)
from pilothouse.runtime.mockllm.faults import FaultConfig
from pilothouse.runtime.mockllm.process import AdminClient, MockLLMProcess, StatsSnapshot
from pilothouse.runtime.mockllm.scenarios import Scenario, load_default, load_file, load_text

__all__ = [
    "AdminClient",
    "FaultConfig",
    "FaultConfigError",
    "InvalidRequestError",
    "LaunchError",
    "MockLLMError",
    "MockLLMProcess",
    "Scenario",
    "ScenarioError",
    "StatsSnapshot",
    "load_default",
    "load_file",
    "load_text",
]
