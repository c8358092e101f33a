from __future__ import annotations

import logging
from concurrent import futures

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry import setup_service
from trunkline.telemetry.logs import log_level_from_env
from trunkline.telemetry.service import otlp_endpoint, tracer_provider


def test_setup_service_names_the_resource_trunkline_dash_service(
    span_exporter: InMemorySpanExporter,
) -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "trunkline-test"


def test_setup_service_is_idempotent(span_exporter: InMemorySpanExporter) -> None:
    before = trace.get_tracer_provider()
    root_handlers = list(logging.getLogger().handlers)
    setup_service("test")
    setup_service("other")  # a process is one service: the first name stays
    assert trace.get_tracer_provider() is before
    assert logging.getLogger().handlers == root_handlers


def test_setup_service_rejects_a_blank_name() -> None:
    with pytest.raises(ValueError):
        setup_service("")
    with pytest.raises(ValueError):
        setup_service("my api")


def test_spans_are_recorded_without_an_otlp_endpoint(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("work") as span:
        assert span.get_span_context().is_valid
    assert [s.name for s in spans.get_finished_spans()] == ["work"]


def test_otlp_endpoint_prefers_the_trunkline_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUNKLINE_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert otlp_endpoint() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert otlp_endpoint() == "http://collector:4317"
    monkeypatch.setenv("TRUNKLINE_OTLP_ENDPOINT", "http://jaeger:4317")
    assert otlp_endpoint() == "http://jaeger:4317"


def test_log_level_comes_from_trunkline_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUNKLINE_LOG_LEVEL", raising=False)
    assert log_level_from_env() == logging.INFO
    monkeypatch.setenv("TRUNKLINE_LOG_LEVEL", "debug")
    assert log_level_from_env() == logging.DEBUG
    monkeypatch.setenv("TRUNKLINE_LOG_LEVEL", "chatty")
    with pytest.raises(ValueError, match="TRUNKLINE_LOG_LEVEL"):
        log_level_from_env()


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """The receiving end of OTLP/gRPC, as Jaeger or an OpenTelemetry Collector runs it."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_spans_reach_an_otlp_collector_with_the_service_name() -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    provider = tracer_provider("signaling", f"http://127.0.0.1:{port}")
    try:
        with provider.get_tracer("test").start_as_current_span("INVITE"):
            pass
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
        server.stop(grace=None)
    [request] = collector.requests
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "trunkline-signaling"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["INVITE"]


def test_tune_gc_sets_the_thresholds_and_refuses_nonsense() -> None:
    import gc

    from trunkline.telemetry import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc("5000,20,30")
        assert gc.get_threshold() == (5000, 20, 30)
        assert gc.get_freeze_count() > 0
        for bad in ("1,2", "a,b,c", "0,10,10"):
            with pytest.raises(ValueError, match="TRUNKLINE_GC_THRESHOLDS"):
                tune_gc(bad)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
