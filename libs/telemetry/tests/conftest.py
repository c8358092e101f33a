"""Telemetry set up once per test session, with finished spans kept in memory to inspect."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry import setup_service


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    with root_logging_restored():
        # The tracer provider stays for the session; the JSON log handler does not, because
        # other packages' tests in the same run read stderr (CliRunner) and expect no INFO.
        setup_service("test")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "setup_service installs the SDK provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()


@contextmanager
def root_logging_restored() -> Iterator[None]:
    """Undo what configuring logging did to the root logger, on the way out."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    with root_logging_restored():
        yield
