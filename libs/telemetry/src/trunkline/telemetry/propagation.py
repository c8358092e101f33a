"""The one place where trace context crosses a process boundary (NATS headers, gRPC metadata).

Both directions go through OpenTelemetry's global propagator, which is W3C tracecontext (plus
baggage) unless OTEL_PROPAGATORS says otherwise, so every hop speaks the same `traceparent`.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate
from opentelemetry.context import Context


def inject(carrier: dict[str, str], context: Context | None = None) -> dict[str, str]:
    """Add the trace headers of `context` (default: the current one) to `carrier`; return it.

    Outside any recording span nothing is added, so callers can pass the result on as is.
    """
    propagate.inject(carrier, context=context)
    return carrier


def extract(carrier: Mapping[str, str], context: Context | None = None) -> Context:
    """The remote parent context carried by `carrier`, on top of `context` (default: current).

    Keys are matched case-insensitively: W3C names are lower case, but NATS headers keep
    whatever case a publisher (or a proxy in between) chose.
    """
    lowered = {key.lower(): value for key, value in carrier.items()}
    return propagate.extract(lowered, context=context)
