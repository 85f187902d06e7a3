"""Log lines are JSON with the request and trace ids and nothing a log must not keep (personal
data, URL credentials, bearer tokens); tracing follows the standard OTEL_* variables first."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from pilothouse.runtime import config, telemetry


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter())
    logger = logging.getLogger("pilothouse.test.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_request_id_and_extras(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    token = telemetry.REQUEST_ID.set("req-42")
    try:
        logger.info("answered %s", "ok", extra={"status": "completed", "latency_ms": 12.5})
    finally:
        telemetry.REQUEST_ID.reset(token)
    logger.warning("multi\nline")
    first, second = _lines(stream)
    assert first["msg"] == "answered ok"
    assert first["level"] == "info"
    assert first["request_id"] == "req-42"
    assert first["status"] == "completed"
    assert first["latency_ms"] == 12.5
    assert "request_id" not in second
    assert second["msg"] == "multi\nline"


def test_trace_and_span_ids_of_the_current_span(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        logger.info("inside")
    [line] = _lines(stream)
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")


def test_personal_data_and_secrets_never_reach_a_log_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.error(
        "cannot reach redis://default:s3cret@redis:6379/0 for bob@example.com",
        extra={"headers": {"authorization": "Bearer tok-123456"}, "card": "4111 1111 1111 1111"},
    )
    try:
        raise ValueError("postgres://app:hunter2@db/audit refused alice@example.org")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    for secret in ("s3cret", "bob@example.com", "tok-123456", "4111", "hunter2", "alice@"):
        assert secret not in text
    first, second = _lines(stream)
    assert "redis://***@redis:6379/0" in str(first["msg"])
    assert "Bearer ***" in str(first["headers"])
    assert "ValueError" in str(second["error"])


def _cfg(**telemetry_settings: object) -> config.RuntimeConfig:
    return config.parse_config(
        {
            "agent": "support",
            "model": {"endpoint": "http://127.0.0.1:9/v1", "name": "m"},
            "telemetry": telemetry_settings,
        }
    )


@pytest.mark.parametrize(
    ("settings", "env", "plan"),
    [
        ({}, {}, telemetry.TracingPlan(False)),
        (
            {"otlpEndpoint": "http://collector:4318"},
            {},
            telemetry.TracingPlan(True, "http://collector:4318/v1/traces", "pilothouse-support"),
        ),
        (
            {"otlpEndpoint": "http://collector:4318/v1/traces/", "serviceName": "svc"},
            {},
            telemetry.TracingPlan(True, "http://collector:4318/v1/traces", "svc"),
        ),
        (
            {"otlpEndpoint": "http://from-config:4318"},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://from-env:4318", "OTEL_SERVICE_NAME": "x"},
            telemetry.TracingPlan(True, None, None),
        ),
        (
            {},
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://from-env:4318/v1/traces"},
            telemetry.TracingPlan(True, None, "pilothouse-support"),
        ),
        (
            {"otlpEndpoint": "http://collector:4318"},
            {"OTEL_SDK_DISABLED": "true"},
            telemetry.TracingPlan(False),
        ),
        (
            {"otlpEndpoint": "http://collector:4318"},
            {"OTEL_TRACES_EXPORTER": "none"},
            telemetry.TracingPlan(False),
        ),
    ],
)
def test_tracing_follows_otel_variables_then_the_config(
    settings: dict[str, object], env: dict[str, str], plan: telemetry.TracingPlan
) -> None:
    assert telemetry.plan_tracing(_cfg(**settings), env) == plan
