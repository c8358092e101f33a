"""Trunkline telemetry: one way for every service to trace, log and expose metrics.

Call `setup_service("<name>")` first thing in a service's `main()`. Then:

- logs: use `logging.getLogger(...)` as usual; every line is one JSON object on stderr with
  the service name and, inside a span, its trace and span ids (`trunkline.telemetry.logs`);
- traces: `opentelemetry.trace.get_tracer(__name__)`; carry the context across NATS with
  `inject` / `extract` (`trunkline.telemetry.propagation`) and across gRPC with the
  interceptors of `trunkline.telemetry.grpc_aio`;
- metrics: prometheus_client's default registry, served by an HTTP service through
  `trunkline.telemetry.metrics.exposition()` or, in a service without HTTP, by
  `start_health_server()` (`/metrics` and `/healthz`);
- a service that holds many live objects (calls) calls `tune_gc()` once started, so the
  garbage collector's full passes do not stall its event loop.
"""

from trunkline.telemetry.health import HealthServer, start_health_server
from trunkline.telemetry.logs import configure_logging
from trunkline.telemetry.propagation import extract, inject
from trunkline.telemetry.service import setup_service, tune_gc

__all__ = [
    "HealthServer",
    "configure_logging",
    "extract",
    "inject",
    "setup_service",
    "start_health_server",
    "tune_gc",
]
