"""Prometheus exposition of the process's default registry, for any HTTP framework.

Services define their metrics with prometheus_client (Counter, Histogram, ...) in the default
registry; an HTTP service serves them with

    body, content_type = exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder


def exposition(
    accept: str | None = None, registry: CollectorRegistry = REGISTRY
) -> tuple[bytes, str]:
    """The registry's samples and their content type, negotiated from an Accept header.

    Prometheus text format by default; OpenMetrics when the scraper asks for it (needed for
    exemplars). The body is built on each call: scrapes are rare and registries small.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
