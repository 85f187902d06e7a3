"""Pilothouse runtime: what runs in every agent pod.

The runtime serves an agent over HTTP, queues work durably in Redis Streams, runs the reliable
agent loop (LLM client, retries, shared circuit breaker, fallback, tools, sessions), checks
every action against the agent's policies, and records each decision for the audit trail.
The operator renders a :class:`~pilothouse.runtime.config.RuntimeConfig` into a ConfigMap;
``pilothouse serve --config FILE`` reads it.
"""

__all__: list[str] = []
