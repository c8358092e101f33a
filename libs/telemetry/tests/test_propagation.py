from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry import extract, inject


def test_inject_then_extract_round_trips_the_span_context(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("publish") as span:
        headers = inject({"Nats-Msg-Id": "1"})
    sent = span.get_span_context()
    assert headers["Nats-Msg-Id"] == "1"
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{sent.trace_id:032x}", f"{sent.span_id:016x}")
    assert int(flags, 16) & 0x01, "sampled"
    received = trace.get_current_span(extract(headers)).get_span_context()
    assert received.is_remote
    assert (received.trace_id, received.span_id) == (sent.trace_id, sent.span_id)


def test_extract_ignores_the_case_of_header_names(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("publish") as span:
        headers = inject({})
    shouted = {key.upper(): value for key, value in headers.items()}
    received = trace.get_current_span(extract(shouted)).get_span_context()
    assert received.trace_id == span.get_span_context().trace_id


def test_a_child_of_the_extracted_context_joins_the_trace(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("producer") as producer:
        headers = inject({})
    with tracer.start_as_current_span("consumer", context=extract(headers)) as consumer:
        pass
    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.get_span_context().span_id


def test_inject_outside_a_span_adds_nothing(spans: InMemorySpanExporter) -> None:
    assert inject({}) == {}
    assert not trace.get_current_span(extract({})).get_span_context().is_valid
