from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry import configure_logging


@pytest.fixture
def log_stream(span_exporter: InMemorySpanExporter, restore_root_logging: None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("test", logging.INFO, stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_log_line_inside_a_span_carries_its_trace_and_span_ids(log_stream: io.StringIO) -> None:
    with trace.get_tracer("test").start_as_current_span("call") as span:
        logging.getLogger("trunkline.signaling").info(
            "INVITE received", extra={"call_sid": "CA0123", "call_id": "abc@pbx"}
        )
    [line] = lines(log_stream)
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert line["call_sid"] == "CA0123"
    assert line["call_id"] == "abc@pbx"
    assert list(line)[:5] == ["timestamp", "level", "logger", "message", "service"]
    assert line["level"] == "INFO"
    assert line["logger"] == "trunkline.signaling"
    assert line["message"] == "INVITE received"
    assert line["service"] == "test"
    assert line["timestamp"].endswith("+00:00")


def test_a_log_line_outside_a_span_has_no_trace_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("trunkline.api").warning("no NATS", extra={"account_sid": "AC1"})
    [line] = lines(log_stream)
    assert "trace_id" not in line and "span_id" not in line
    assert line["level"] == "WARNING"
    assert line["account_sid"] == "AC1"


def test_each_record_is_one_line_even_with_a_traceback(log_stream: io.StringIO) -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("trunkline.api").exception("failed")
    [line] = lines(log_stream)
    assert "RuntimeError: boom" in line["exc_info"]


def test_configuring_again_replaces_the_handler(log_stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging("test", logging.INFO, second)
    logging.getLogger("x").info("once")
    assert log_stream.getvalue() == ""
    assert len(lines(second)) == 1


def test_records_below_the_level_are_dropped(log_stream: io.StringIO) -> None:
    logging.getLogger("x").debug("hidden")
    assert log_stream.getvalue() == ""
