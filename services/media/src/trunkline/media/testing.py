"""Run the real media service as a process, for component and end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from trunkline.telemetry.testing import service_process
from trunkline.v1 import media_pb2_grpc

__all__ = ["MediaProcess", "media_service"]


@dataclass(frozen=True)
class MediaProcess:
    process: subprocess.Popen[bytes]
    grpc_address: str
    port_min: int
    port_max: int
    log: Path

    def stub(self, channel: grpc.Channel) -> media_pb2_grpc.MediaStub:
        return media_pb2_grpc.MediaStub(channel)


def _port_range(size: int) -> tuple[int, int]:
    """A UDP range nothing binds to right now, below the kernel's ephemeral ports."""
    start = 10000 + 2 * (int.from_bytes(os.urandom(2), "big") % 5000)
    for _ in range(200):
        if start + size > 32768:
            start = 10000
        busy = _first_busy(start, size)
        if busy is None:
            return start, start + size - 1
        start = busy + 1 + (busy + 1) % 2  # slide past the busy port, even-aligned
    raise RuntimeError("no free UDP port range for the media service")


def _first_busy(start: int, size: int) -> int | None:
    sockets = []
    try:
        for port in range(start, start + size):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return port
        return None
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def media_service(
    log_dir: Path,
    *,
    ports: int = 200,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[MediaProcess]:
    """Start `python -m trunkline.media` on loopback with a free UDP range of `ports`
    ports; stop it (SIGTERM) afterwards."""
    port_min, port_max = _port_range(ports)
    environment = {
        "TRUNKLINE_MEDIA_RTP_ADDRESS": "127.0.0.1",
        "TRUNKLINE_MEDIA_PORT_MIN": str(port_min),
        "TRUNKLINE_MEDIA_PORT_MAX": str(port_max),
        **(env or {}),
    }
    with service_process(
        "trunkline.media",
        log_dir,
        address_variable="TRUNKLINE_MEDIA_GRPC_ADDRESS",
        env=environment,
        timeout=timeout,
    ) as running:
        yield MediaProcess(running.process, running.grpc_address, port_min, port_max, running.log)
