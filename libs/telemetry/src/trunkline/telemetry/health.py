"""`/healthz` and `/metrics` for services that have no HTTP server of their own (gRPC, NATS).

The standard library's ThreadingHTTPServer runs in a daemon thread: Kubernetes probes and
Prometheus scrapes are a few requests a minute, and a thread keeps them answering even when
the service's event loop is busy or stuck (which `/healthz` is then meant to reveal through
`ready`, not by timing out).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from trunkline.telemetry.metrics import exposition

log = logging.getLogger("trunkline.telemetry.health")


class HealthServer:
    """A running health server; `close()` stops it and frees the port."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_health_server(host: str, port: int, ready: Callable[[], bool]) -> HealthServer:
    """Serve `/healthz` and `/metrics` on host:port from a background thread.

    `/healthz` answers 200 `{"status": "ok"}` while `ready()` returns True, else 503
    `{"status": "unavailable"}` (also when `ready` raises, which is logged). `ready` runs on
    the server thread, so it must be thread-safe: reading a flag or a counter is.
    """

    class Handler(_HealthHandler):
        is_ready = staticmethod(ready)

    server_class = _IPv6Server if _is_ipv6(host) else ThreadingHTTPServer
    server = server_class((host, port), Handler)
    thread = threading.Thread(
        target=server.serve_forever, name=f"health-server-{port}", daemon=True
    )
    thread.start()
    running = HealthServer(server, thread)
    log.info("health server listening", extra={"host": running.host, "port": running.port})
    return running


class _HealthHandler(BaseHTTPRequestHandler):
    is_ready: Callable[[], bool]
    server_version = "trunkline-health"
    sys_version = ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._healthz()
        elif path == "/metrics":
            body, content_type = exposition(self.headers.get("Accept"))
            self._send(HTTPStatus.OK, body, content_type)
        else:
            self._send(HTTPStatus.NOT_FOUND, b'{"status":"not found"}', "application/json")

    def _healthz(self) -> None:
        try:
            ok = bool(self.is_ready())
        except Exception:
            log.exception("readiness check failed")
            ok = False
        status, word = (
            (HTTPStatus.OK, "ok") if ok else (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable")
        )
        self._send(status, json.dumps({"status": word}).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The base class prints every request to stderr as plain text, which would break the
        # one-JSON-object-per-line log stream; probes are too frequent to log at INFO anyway.
        log.debug(format % args)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False  # a name such as "localhost": the IPv4 server resolves it
