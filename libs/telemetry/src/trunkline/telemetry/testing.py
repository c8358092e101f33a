"""Test helpers: finished spans kept in memory, the root logger left as it was found, and a
service run as its own process until its gRPC server answers."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trunkline.telemetry.service import setup_service


@contextmanager
def root_logging_restored() -> Iterator[None]:
    """Undo what configuring logging did to the root logger, on the way out."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


@cache
def in_memory_spans() -> InMemorySpanExporter:
    """Telemetry set up once per process, with every finished span also kept in memory."""
    with root_logging_restored():
        # The tracer provider stays; the JSON log handler does not, because other packages'
        # tests in the same run read stderr (CliRunner) and expect no INFO lines.
        setup_service("test")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "setup_service installs the SDK provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass(frozen=True)
class ServiceProcess:
    """A service started by `service_process`: its process, gRPC address and log file."""

    process: subprocess.Popen[bytes]
    grpc_address: str
    log: Path


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def service_process(
    module: str,
    log_dir: Path,
    *,
    address_variable: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
    stop_timeout: float = 15.0,
) -> Iterator[ServiceProcess]:
    """Run `python -m <module>` with its gRPC address (`address_variable`) on a free
    loopback port and `env` added to the environment; yield once its gRPC server accepts
    calls (or fail with its log if it exits or is not ready in `timeout` s); SIGTERM it on
    the way out, then SIGKILL after `stop_timeout` s."""
    grpc_address = f"127.0.0.1:{free_tcp_port()}"
    environment = {**os.environ, address_variable: grpc_address, **(env or {})}
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{module.rsplit('.', 1)[-1]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and a module of ours)
            [sys.executable, "-m", module], env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_ready(module, process, grpc_address, log, timeout)
        yield ServiceProcess(process, grpc_address, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(
    module: str, process: subprocess.Popen[bytes], address: str, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        while True:
            try:
                ready.result(timeout=0.1)
                return
            except grpc.FutureTimeoutError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                ready.cancel()
                raise RuntimeError(f"{module} not ready in {timeout} s:\n{log.read_text()}")
