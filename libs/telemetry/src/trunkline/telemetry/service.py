"""`setup_service`: tracing and logging for one Trunkline process, configured once."""

from __future__ import annotations

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
