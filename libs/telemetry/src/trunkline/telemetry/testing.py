"""Test helpers: finished spans kept in memory, and the root logger left as it was found."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry.service import setup_service


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


@cache
def in_memory_spans() -> InMemorySpanExporter:
    """Telemetry set up once per process, with every finished span also kept in memory."""
    with root_logging_restored():
        # The tracer provider stays; the JSON log handler does not, because other packages'
        # tests in the same run read stderr (CliRunner) and expect no INFO lines.
        setup_service("test")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "setup_service installs the SDK provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
