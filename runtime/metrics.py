"""Prometheus metric objects of the runtime, in one place.

Every module that measures something imports this module and updates the objects here
(``metrics.LLM_RETRIES.inc()``); the serving layer exposes the default registry on
``/metrics``. Names are in base units (seconds, USD, tokens) and every label has a bounded set of
values: agent ids and model keys come from the config, never from user input (an unknown tool
the model invents is counted as ``_unknown``).

Every counter series whose label values are known in advance is created at 0 when the process
starts, by the module that moves it (the worker pool: requests by status, dead letters,
reclaimed entries; the toolbox: every configured tool and outcome; the LLM client, the agent,
the audit writer, the policy engine, the API). Alerts use ``increase()``/``rate()``, which need
two samples: a series that first appears at 1 shows no increase, and the first dead letter of a
fresh pod would never alert. Label values only known when they happen (HTTP status codes, a
decision's action and outcome) appear then.

Sections: the agent loop (LLM client, retries, breaker, fallback, tools, decisions). Serving and
policy metrics are added below theirs by their modules' owners.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "AUDIT_BATCH_DURATION",
    "AUDIT_RECORDS",
    "AUDIT_SPOOLED",
    "BREAKER_DEGRADED",
    "BREAKER_STATE",
    "BREAKER_STATE_VALUES",
    "DECISIONS",
    "FALLBACKS",
    "LLM_COST",
    "LLM_REQUEST_DURATION",
    "LLM_RETRIES",
    "LLM_TOKENS",
    "POLICY_DECISIONS",
    "POLICY_RESULTS",
    "TOOL_CALLS",
    "UNKNOWN_TOOL_LABEL",
]

# ----------------------------------------------------------------------------- the agent loop

LLM_REQUEST_DURATION: Final = Histogram(
    "pilothouse_llm_request_duration_seconds",
    "Duration of one HTTP call to a model (each attempt counts), successful or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LLM_TOKENS: Final = Counter(
    "pilothouse_llm_tokens_total",
    "Tokens reported by models, by kind (input, output).",
    ["kind"],
)
LLM_COST: Final = Counter(
    "pilothouse_llm_cost_usd_total",
    "Cost of model calls in USD, computed from token usage and the model's pricing.",
)
LLM_RETRIES: Final = Counter(
    "pilothouse_retries_total",
    "LLM calls retried after a transient failure (one per retry, not per request).",
)
FALLBACKS: Final = Counter(
    "pilothouse_fallbacks_total",
    "Answers not given by the primary model, by the reason the primary did not answer.",
    ["reason"],
)
LLM_MODEL_OFFERED: Final = Gauge(
    "pilothouse_llm_model_offered",
    "1 when the model's server lists the configured model at start, 0 when it does not "
    "(unset when the server cannot list its models).",
    ["agent", "model"],
)
BREAKER_STATE: Final = Gauge(
    "pilothouse_circuit_breaker_state",
    "Circuit breaker state per agent and model endpoint: 0 closed, 1 half-open, 2 open.",
    ["agent", "model"],
)
BREAKER_STATE_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
"""Value of :data:`BREAKER_STATE` per state name."""
BREAKER_DEGRADED: Final = Gauge(
    "pilothouse_circuit_breaker_degraded",
    "1 while Redis is unreachable and circuit breakers run on per-process state.",
)
TOOL_CALLS: Final = Counter(
    "pilothouse_tool_calls_total",
    "Tool calls by tool and outcome (ok, failed, invalid_arguments, unknown_tool, denied).",
    ["tool", "outcome"],
)
UNKNOWN_TOOL_LABEL: Final = "_unknown"
"""``tool`` label of calls to tools that are not configured (keeps the label set bounded)."""
DECISIONS: Final = Counter(
    "pilothouse_decisions_total",
    "Decision records produced by the agent loop, by agent, action and outcome.",
    ["agent", "action", "outcome"],
)

# ------------------------------------------------------------------------------ governance

POLICY_RESULTS: Final = (
    "allowed",
    "denied",
    "escalate",
    "dry_run_denied",
    "dry_run_escalate",
    "failed_closed",
    "failed_open",
)
"""Values of the ``result`` label of :data:`POLICY_DECISIONS` (``failed_*``: the check itself
failed, e.g. Redis down, and the policy failed closed or, with ``failOpen``, open)."""
POLICY_DECISIONS: Final = Counter(
    "pilothouse_policy_decisions_total",
    "Verdicts of each policy on the actions it judged, by policy and result.",
    ["policy", "result"],
)
AUDIT_RECORDS: Final = Counter(
    "pilothouse_audit_records_total",
    "Audit records (decisions and request summaries) by outcome: written (to PostgreSQL), "
    "spooled (to local disk while PostgreSQL was unreachable), replayed (from the spool), "
    "duplicate (already stored; dropped).",
    ["outcome"],
)
AUDIT_SPOOLED: Final = Gauge(
    "pilothouse_audit_spooled_records",
    "Audit records waiting in the local spool to be replayed into PostgreSQL.",
)
AUDIT_BATCH_DURATION: Final = Histogram(
    "pilothouse_audit_batch_duration_seconds",
    "Duration of one batch write of the audit writer to PostgreSQL.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# ------------------------------------------------------------------- serving, queue, workers

__all__ += [
    "DEAD_LETTERS",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "INFLIGHT",
    "QUEUE_BACKLOG",
    "QUEUE_RECLAIMED",
    "QUEUE_REJECTED",
    "QUEUE_WAIT",
    "REQUESTS",
    "REQUEST_DURATION",
]

REQUESTS: Final = Counter(
    "pilothouse_requests_total",
    "Requests answered by this process's workers, by agent and result status (completed, "
    "fallback, refused, escalated, failed).",
    ["agent", "status"],
)
REQUEST_DURATION: Final = Histogram(
    "pilothouse_request_duration_seconds",
    "Time from the API accepting a request to its answer being stored (queue wait included).",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
QUEUE_WAIT: Final = Histogram(
    "pilothouse_queue_wait_seconds",
    "Time an accepted request waited in the queue before a worker took it.",
    ["agent"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_BACKLOG: Final = Gauge(
    "pilothouse_queue_backlog",
    "Entries of the agent's stream not yet acknowledged (waiting or being processed), as last "
    "seen by this process.",
    ["agent"],
)
QUEUE_REJECTED: Final = Counter(
    "pilothouse_queue_rejected_total",
    "Requests refused with 429 because the agent's queue was full.",
    ["agent"],
)
QUEUE_RECLAIMED: Final = Counter(
    "pilothouse_queue_reclaimed_total",
    "Entries this process took over from a worker that stopped acknowledging (died, hung, or "
    "gave them back).",
    ["agent"],
)
DEAD_LETTERS: Final = Counter(
    "pilothouse_dead_letters_total",
    "Entries moved to the agent's dead-letter stream.",
    ["agent"],
)
INFLIGHT: Final = Gauge(
    "pilothouse_inflight_requests",
    "Requests being processed by this process's workers.",
    ["agent"],
)
HTTP_REQUESTS: Final = Counter(
    "pilothouse_http_requests_total",
    "HTTP requests served, by route template (``_other`` for unknown paths), method and status.",
    ["route", "method", "code"],
)
HTTP_REQUEST_DURATION: Final = Histogram(
    "pilothouse_http_request_duration_seconds",
    "Time to serve an HTTP request (waiting for an answer included), by route template.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
