"""Telemetry set up once per test session, with finished spans kept in memory to inspect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry.testing import in_memory_spans, root_logging_restored


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    return in_memory_spans()


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    with root_logging_restored():
        yield
