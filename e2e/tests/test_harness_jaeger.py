"""Jaeger from the harness: a span sent over OTLP gRPC, read back by trace id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

pytestmark = pytest.mark.e2e


def fetch_trace(query: str, trace_id: str, timeout: float) -> dict[str, Any]:
    """Poll the query API until the trace is there (storage write is asynchronous)."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(base_url=query, timeout=5) as client:
        while time.monotonic() < deadline:
            resp = client.get(f"/api/traces/{trace_id}")
            if resp.status_code == 200 and resp.json().get("data"):
                trace: dict[str, Any] = resp.json()["data"][0]
                return trace
            last = f"{resp.status_code} {resp.text[:200]}"
            time.sleep(0.1)
    raise AssertionError(f"trace {trace_id} not in Jaeger after {timeout} s; last: {last}")


def test_span_over_otlp_is_queryable(harness_jaeger: Mapping[str, Any]) -> None:
    # A unique service name: a harness left running keeps traces from earlier runs.
    service = f"trunkline-smoke-{uuid.uuid4().hex[:12]}"
    # Our own provider, not the global one, so other tests' telemetry setup is untouched.
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=harness_jaeger["otlp_grpc"], insecure=True, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    try:
        with provider.get_tracer("trunkline.e2e").start_as_current_span("smoke") as span:
            span.set_attribute("trunkline.test", "harness")
            trace_id = format(span.get_span_context().trace_id, "032x")
            span_id = format(span.get_span_context().span_id, "016x")
        assert provider.force_flush(timeout_millis=10_000), "OTLP export did not finish"
    finally:
        provider.shutdown()

    trace = fetch_trace(harness_jaeger["query"], trace_id, timeout=15)
    (found,) = trace["spans"]
    assert found["traceID"] == trace_id
    assert found["spanID"] == span_id
    assert found["operationName"] == "smoke"
    assert trace["processes"][found["processID"]]["serviceName"] == service
    tags = {t["key"]: t["value"] for t in found["tags"]}
    assert tags["trunkline.test"] == "harness"
