"""Governance: the policy engine and the policy families it evaluates.

The agent loop asks :class:`PolicyEngine` (a :class:`pilothouse.runtime.hooks.PolicyHook`)
before every request, LLM call and tool call. One module per policy family: ``safety``,
``compliance`` (with ``pii``: detection and the :func:`redact` the audit writer and the logs
use), ``resources``, ``approvals`` (escalation), ``rates`` and ``costs`` (budgets kept in Redis
by the Lua scripts in ``lua/``). See docs/governance.md.
"""

from pilothouse.runtime.policies.engine import PolicyEngine
from pilothouse.runtime.policies.pii import redact

__all__ = ["PolicyEngine", "redact"]
