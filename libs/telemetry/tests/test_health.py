from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import Counter

from trunkline.telemetry import HealthServer, start_health_server
from trunkline.telemetry.metrics import exposition

PROBES = Counter("trunkline_test_probes", "A counter that only the telemetry tests touch")


class Flag:
    def __init__(self) -> None:
        self.value = True

    def __call__(self) -> bool:
        return self.value


@pytest.fixture
def ready() -> Flag:
    return Flag()


@pytest.fixture
def server(ready: Flag) -> Iterator[HealthServer]:
    running = start_health_server("127.0.0.1", 0, ready)
    yield running
    running.close()


def get(server: HealthServer, path: str, accept: str = "") -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_healthz_is_200_while_ready(server: HealthServer) -> None:
    status, content_type, body = get(server, "/healthz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ok"}


def test_healthz_is_503_when_not_ready(server: HealthServer, ready: Flag) -> None:
    ready.value = False
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "unavailable"}


def test_healthz_is_503_when_the_check_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("database gone")

    running = start_health_server("127.0.0.1", 0, broken)
    try:
        assert get(running, "/healthz")[0] == 503
    finally:
        running.close()


def test_metrics_serves_the_default_registry(server: HealthServer) -> None:
    PROBES.inc()
    status, content_type, body = get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert b"trunkline_test_probes_total " in body


def test_metrics_speaks_openmetrics_when_asked(server: HealthServer) -> None:
    _, content_type, body = get(server, "/metrics", accept="application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_other_paths_are_404(server: HealthServer) -> None:
    assert get(server, "/")[0] == 404


def test_close_frees_the_port(ready: Flag) -> None:
    first = start_health_server("127.0.0.1", 0, ready)
    port = first.port
    first.close()
    second = start_health_server("127.0.0.1", port, ready)
    second.close()


def test_exposition_returns_bytes_and_content_type() -> None:
    body, content_type = exposition()
    assert isinstance(body, bytes)
    assert content_type.startswith("text/plain; version=")
