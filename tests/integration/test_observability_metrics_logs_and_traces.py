"""Observability of a runtime: ``/metrics`` parses and its counters move as requests are
answered (with bounded labels), logs are one JSON object per line with request and trace ids
and no personal data, traces are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT``
says so, and one trace covers API -> queue -> worker -> policy/LLM/tool spans (in-process, with
an in-memory exporter)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_support import ToolServer, standard_tools
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from serving_support import await_for, runtime_config, runtime_env, wait_for

from pilothouse.runtime import config, serving, telemetry, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


class _Collector(BaseHTTPRequestHandler):
    server: _CollectorServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.exports.append((self.path, request))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()


class _CollectorServer(ThreadingHTTPServer):
    daemon_threads = True
    exports: list[tuple[str, trace_service_pb2.ExportTraceServiceRequest]]


@pytest.fixture
def collector() -> Iterator[_CollectorServer]:
    server = _CollectorServer(("127.0.0.1", 0), _Collector)
    server.exports = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lb, v in samples if n == name and labels.items() <= lb.items())


def test_metrics_logs_and_exported_traces_of_a_runtime_process(
    redis_url: str, postgres_dsn: str, tmp_path: Path, collector: _CollectorServer, unique_name: str
) -> None:
    host, port = collector.server_address[:2]
    env = {
        **runtime_env(redis_url, postgres_dsn),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{host!s}:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "support-agent",
    }
    with MockLLMProcess(seed=9) as llm:
        cfg = runtime_config(unique_name, llm.url)
        with testing.RuntimeProcess(cfg, env=env, workdir=tmp_path / "rt") as rt:
            with httpx.Client(base_url=rt.url, timeout=30) as client:
                before = _samples(client.get("/metrics").text)
                for i in range(3):
                    body = {"input": f"What is 2+2? Mail me at alice{i}@example.com"}
                    r = client.post("/v1/requests?wait=10", json=body)
                    assert r.status_code == 200, r.text
                assert client.post("/v1/requests", json={"input": 5}).status_code == 422

                def settled() -> list[tuple[str, dict[str, str], float]] | None:
                    # Answers come before the audit write; work ends when it is acknowledged.
                    samples = _samples(client.get("/metrics").text)
                    busy = _value(samples, "pilothouse_inflight_requests", agent=unique_name)
                    return samples if busy == 0 else None

                after = wait_for(settled, timeout=10, what="in-flight work to finish")

            def moved(name: str, **labels: str) -> float:
                return _value(after, name, **labels) - _value(before, name, **labels)

            agent = unique_name
            assert moved("pilothouse_requests_total", agent=agent, status="completed") == 3
            assert moved("pilothouse_request_duration_seconds_count", agent=agent) == 3
            assert moved("pilothouse_queue_wait_seconds_count", agent=agent) == 3
            assert (
                moved(
                    "pilothouse_http_requests_total",
                    route="/v1/requests",
                    method="POST",
                    code="200",
                )
                == 3
            )
            assert moved("pilothouse_http_requests_total", route="/v1/requests", code="422") == 1
            assert moved("pilothouse_llm_request_duration_seconds_count") >= 3
            assert any(n == "pilothouse_queue_backlog" for n, _, _ in after)
            # Bounded labels: no request id, no raw input ever becomes a label value.
            values = {v for _, labels, _ in after for v in labels.values()}
            assert not [v for v in values if v.startswith("req-") or "@" in v]

            # Every exported trace carries the service name; the worker's span is in it.
            def exported() -> list[Any] | None:
                spans = [
                    (rs.resource, span)
                    for _, req in collector.exports
                    for rs in req.resource_spans
                    for ss in rs.scope_spans
                    for span in ss.spans
                ]
                names = {s.name for _, s in spans}
                return spans if {f"process {agent}", "POST /v1/requests"} <= names else None

            spans = wait_for(exported, timeout=10, what="spans at the OTLP endpoint")
            assert {path for path, _ in collector.exports} == {"/v1/traces"}
            services = {
                a.value.string_value
                for resource, _ in spans
                for a in resource.attributes
                if a.key == "service.name"
            }
            assert services == {"support-agent"}
            rt.terminate()
            assert rt.wait(30) == 0

        # Logs: one JSON object per line; request lines carry request and trace ids; no PII.
        raw = rt.log_file.read_text(encoding="utf-8")
        events = rt.logs()
        assert len(events) == len(raw.splitlines())
        answered = [e for e in events if e.get("msg") == "request answered"]
        assert len(answered) == 3
        assert all(e["request_id"].startswith("req-") for e in answered)
        assert all(len(e["trace_id"]) == 32 for e in answered)
        assert "@example.com" not in raw


# ------------------------------------------------------------------------- one trace, in-process


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.install_span_exporter(exporter)
    yield exporter
    exporter.clear()


@pytest.fixture
async def runtime(
    redis_url: str,
    postgres_dsn: str,
    tmp_path: Path,
    tool_server: ToolServer,
    unique_name: str,
    llm: MockLLMProcess,
) -> AsyncIterator[serving.Runtime]:
    tools = [t.model_dump(mode="json", by_alias=True) for t in standard_tools(tool_server.url)]
    doc = runtime_config(
        unique_name,
        llm.url,
        tools=tools,
        audit={"spoolDir": str(tmp_path / "spool")},
        policies=[{"name": "guard", "safety": {"denyPatterns": ["drop table"]}}],
    )
    rt = await serving.build_runtime(
        config.parse_config(doc),
        role=serving.Role.ALL,
        environ=runtime_env(redis_url, postgres_dsn),
        tracing=False,
    )
    await rt.start()
    try:
        yield rt
    finally:
        await rt.drain(1)
        await rt.close()


async def test_one_trace_covers_api_queue_worker_and_the_agents_steps(
    runtime: serving.Runtime, spans: InMemorySpanExporter
) -> None:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as client:
        r = await client.post(
            "/v1/requests?wait=10", json={"input": "What's the weather in Tokyo?"}
        )
    assert r.status_code == 200, r.text
    assert r.json()["actions"][0]["tool"] == "weather_api"

    process_name = f"process {runtime.cfg.agent}"

    # The caller is answered before the audit write; the worker's span ends after it.
    async def worker_span_ended() -> list[Any] | None:
        done = list(spans.get_finished_spans())
        return done if any(s.name == process_name for s in done) else None

    finished = await await_for(worker_span_ended, within=10, what="the worker's span")
    [server] = [s for s in finished if s.name == "POST /v1/requests"]
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/requests"
    assert server.attributes["http.response.status_code"] == 200
    trace_id = server.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}

    [process] = [s for s in in_trace if s.name == process_name]
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == server.context.span_id  # linked through the stream entry
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "redis"
    assert process.attributes["pilothouse.request_id"] == r.json()["request_id"]

    def under_process(span: Any) -> bool:
        while span.parent is not None:
            if span.parent.span_id == process.context.span_id:
                return True
            span = by_id.get(span.parent.span_id)
            if span is None:
                return False
        return False

    chats = [s for s in in_trace if s.name.startswith("chat ")]
    tools = [s for s in in_trace if s.name == "execute_tool weather_api"]
    policies = [s for s in in_trace if s.name.startswith("policy_check")]
    assert len(chats) == 2  # ask, then answer from the tool's result
    assert len(tools) == 1
    assert policies
    assert all(under_process(s) for s in chats + tools + policies)
    for chat in chats:
        assert chat.kind is SpanKind.CLIENT
        assert chat.attributes is not None
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"] == "mock"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert tools[0].attributes is not None
    assert tools[0].attributes["gen_ai.tool.name"] == "weather_api"
