"""`setup_service`: tracing and logging for one Trunkline process, configured once."""

from __future__ import annotations

import gc
import logging
import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from trunkline.telemetry.logs import configure_logging, log_level_from_env

OTLP_ENDPOINT_ENVS = ("TRUNKLINE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

log = logging.getLogger("trunkline.telemetry")
_lock = threading.Lock()
_configured_as: str | None = None


def otlp_endpoint() -> str | None:
    """Where spans go: TRUNKLINE_OTLP_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT, else nowhere."""
    for name in OTLP_ENDPOINT_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def tracer_provider(service_name: str, endpoint: str | None) -> TracerProvider:
    """A TracerProvider for `trunkline-<service_name>`, exporting to `endpoint` if given."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"trunkline-{service_name}"}))
    if endpoint is not None:
        # Imported here: the exporter pulls in grpc and the OTLP protos, which a process that
        # exports nothing (tests, `trunkline up` without Jaeger) does not need to load.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def setup_service(service_name: str) -> None:
    """Configure JSON logging and the global TracerProvider for `trunkline-<service_name>`.

    Idempotent: the first call in a process wins, later calls return at once (a second name
    is logged as a warning, since a process is one service). Spans are always created, so
    trace ids reach the logs and the next hop even without a collector; they are exported
    over OTLP/gRPC (batched, off the request path) only when an endpoint variable is set.
    An `http://` endpoint is dialled without TLS. Raises ValueError on a bad
    TRUNKLINE_LOG_LEVEL, before anything is configured.
    """
    global _configured_as
    if not service_name or any(char.isspace() for char in service_name):
        raise ValueError(f"service name {service_name!r} must be non-empty, without spaces")
    with _lock:
        if _configured_as is not None:
            if _configured_as != service_name:
                log.warning(
                    "telemetry already set up for another service; keeping it",
                    extra={"configured_service": _configured_as, "requested": service_name},
                )
            return
        level = log_level_from_env()
        configure_logging(service_name, level)
        endpoint = otlp_endpoint()
        trace.set_tracer_provider(tracer_provider(service_name, endpoint))
        _configured_as = service_name
    log.info(
        "telemetry configured",
        extra={"otlp_endpoint": endpoint, "log_level": logging.getLevelName(level)},
    )


# The cyclic garbage collector's full collections walk every live object: in a service
# holding thousands of calls (and their SIP transactions, kept 32 s after a call ends) each
# one stopped the event loop for tens of milliseconds. Measured with
# benchmarks/termination.py at 100 calls/s: +118 ms p99 setup delay with Python's default
# thresholds (700, 10, 10), +23 ms with these. Reference counting still frees at once what
# holds no cycle; cycles are collected, less often.
DEFAULT_GC_THRESHOLDS = "100000,50,1000"
GC_THRESHOLDS_ENV = "TRUNKLINE_GC_THRESHOLDS"


def tune_gc(thresholds: str | None = None) -> None:
    """Freeze the objects made at start-up out of collection and set the collector's
    thresholds (TRUNKLINE_GC_THRESHOLDS, three integers). Call once, after start-up."""
    text = thresholds if thresholds is not None else os.environ.get(GC_THRESHOLDS_ENV)
    text = text or DEFAULT_GC_THRESHOLDS
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{GC_THRESHOLDS_ENV} must be three positive integers, not {text!r}")
    gc.collect()
    gc.freeze()
    gc.set_threshold(*values)
