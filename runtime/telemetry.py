"""Logs and traces of a runtime process: JSON log lines and the OpenTelemetry tracer provider.

``pilothouse serve`` calls :func:`configure_logging` and :func:`configure_tracing` once at start;
the API, the queue and the worker pool use :func:`tracer`, :func:`inject` and :func:`extract`
to carry one trace from the HTTP request through the Redis stream into the worker (W3C
``traceparent`` in the stream entry), where the agent loop adds its LLM, tool and policy spans.

Logs are one JSON object per line with the request id and the trace id of the moment. Every
string that goes out is passed through the PII redactor of the governance layer, and
credentials in URLs and bearer tokens are masked: logs never become a copy of users' personal
data or of the pod's secrets.

Traces are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``telemetry.otlpEndpoint`` is set, and not at all
otherwise; the other standard ``OTEL_*`` variables (sampler, headers, service name, resource
attributes, ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER=none``) apply as usual.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

from pilothouse.runtime import config
from pilothouse.runtime.policies import pii

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "TracingPlan",
    "configure_logging",
    "configure_tracing",
    "extract",
    "inject",
    "install_span_exporter",
    "plan_tracing",
    "recording",
    "scrub",
    "span",
    "trace_id",
    "tracer",
]

REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "pilothouse_request_id", default=None
)
"""The request being handled by the current task; every log line carries it."""

TRACER_NAME: Final = "pilothouse.runtime"

_URL_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@")
_BEARER: Final = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message", "taskName"}
)


def scrub(text: str) -> str:
    """``text`` without personal data, URL credentials or bearer tokens."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _BEARER.sub(r"\1***", text)
    return pii.redact(text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v) for v in value]
    return scrub(str(value))


def trace_id() -> str | None:
    """The current trace id as 32 hex digits, if a span is being recorded."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, trace_id, span_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        rid = REQUEST_ID.get()
        if rid is not None:
            doc["request_id"] = rid
        span_ctx = trace.get_current_span().get_span_context()
        if span_ctx.is_valid:
            doc["trace_id"] = format(span_ctx.trace_id, "032x")
            doc["span_id"] = format(span_ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                doc[key] = _scrub_value(value)
        if record.exc_info:
            doc["error"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str = "info", *, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process, uvicorn's included, as JSON lines to ``stream``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # One line per HTTP request is the access log's job in front of the pod, not ours; the same
    # for the HTTP client's line per LLM and tool call (spans and metrics have them).
    for name in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


# -------------------------------------------------------------------------------------- traces


@dataclass(frozen=True, slots=True)
class TracingPlan:
    """What :func:`configure_tracing` installs, decided from the config and ``OTEL_*``."""

    export: bool
    """Whether spans are exported (else no provider: no-op spans, no cost)."""
    endpoint: str | None = None
    """The traces URL from ``telemetry.otlpEndpoint``; None lets the exporter read
    ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``."""
    service_name: str | None = None
    """``service.name``; None when ``OTEL_SERVICE_NAME`` sets it."""


def plan_tracing(cfg: config.RuntimeConfig, environ: Mapping[str, str]) -> TracingPlan:
    """Pure: the standard variables win over the config, the config over the defaults."""
    service = (
        None
        if environ.get("OTEL_SERVICE_NAME")
        else (cfg.telemetry.service_name or f"pilothouse-{cfg.agent}")
    )
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingPlan(False)
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return TracingPlan(False)
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        return TracingPlan(True, None, service)
    base = cfg.telemetry.otlp_endpoint
    if not base:
        return TracingPlan(False)
    base = base.rstrip("/")
    return TracingPlan(True, base if base.endswith("/v1/traces") else base + "/v1/traces", service)


def configure_tracing(
    cfg: config.RuntimeConfig,
    *,
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """Install the process's tracer provider (OTLP/HTTP exporter, batched); None when tracing
    is off. ``exporter`` replaces the OTLP exporter (and turns tracing on)."""
    env = os.environ if environ is None else environ
    plan = plan_tracing(cfg, env)
    if exporter is None:
        if not plan.export:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=plan.endpoint)
    attributes: dict[str, str] = {
        "pilothouse.agent": cfg.agent,
        "k8s.namespace.name": cfg.namespace,
    }
    if plan.service_name:
        attributes[SERVICE_NAME] = plan.service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def install_span_exporter(exporter: SpanExporter) -> TracerProvider:
    """Also send every span of this process to ``exporter`` (synchronously); for tests.

    Adds to the SDK provider already installed, or installs one.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "pilothouse-test"}))
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def recording() -> bool:
    """Whether this process records spans (an SDK tracer provider is installed)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


@contextlib.contextmanager
def _continue(carrier: Mapping[str, str]) -> Iterator[trace.Span]:
    token = otel_context.attach(extract(carrier))
    try:
        yield trace.INVALID_SPAN
    finally:
        otel_context.detach(token)


def span(
    name: str,
    *,
    carrier: Mapping[str, str] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Callable[[], Mapping[str, Any]] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A span continuing the trace in ``carrier`` (W3C headers), made current.

    Without a recording provider no span is made at all (the hot path of a runtime without
    an exporter); the caller's trace context is still made current, so it travels on through
    the queue to a process that records. ``attributes`` is only called when recording.
    """
    if recording():
        return tracer().start_as_current_span(
            name,
            context=extract(carrier) if carrier else None,
            kind=kind,
            attributes=attributes() if attributes is not None else None,
        )
    if carrier:
        return _continue(carrier)
    return contextlib.nullcontext(trace.INVALID_SPAN)


def tracer() -> trace.Tracer:
    """The runtime's tracer (a no-op one until a provider is installed)."""
    return trace.get_tracer(TRACER_NAME)


def inject(carrier: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    out: dict[str, str] = dict(carrier or {})
    propagate.inject(out)
    return out


def extract(carrier: Mapping[str, str]) -> otel_context.Context:
    """A context whose parent is the span described by W3C headers in ``carrier``."""
    return propagate.extract(carrier)
