"""Run the media service: `python -m trunkline.media` (settings from TRUNKLINE_* variables)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvloop

from trunkline.media.front import Front, Worker, open_channels, start_workers, stop_workers
from trunkline.media.ports import PortAllocator
from trunkline.media.relay import Relay
from trunkline.media.server import MediaService, RecordingFork
from trunkline.telemetry import setup_service, tune_gc
from trunkline.telemetry.grpc_aio import server_interceptors
from trunkline.telemetry.health import HealthServer, start_health_server
from trunkline.v1 import media_pb2_grpc

log = logging.getLogger("trunkline.media")


@dataclass(frozen=True)
class Settings:
    grpc_address: str = "127.0.0.1:7100"
    rtp_address: str = "127.0.0.1"
    advertised_address: str = "127.0.0.1"
    port_min: int = 10000
    port_max: int = 60000
    media_timeout: float = 60.0
    recording_address: str = ""
    health_port: int = 0  # 0: no health server
    workers: int = 1

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        rtp = env.get("TRUNKLINE_MEDIA_RTP_ADDRESS", cls.rtp_address)
        settings = cls(
            grpc_address=env.get("TRUNKLINE_MEDIA_GRPC_ADDRESS", cls.grpc_address),
            rtp_address=rtp,
            advertised_address=env.get("TRUNKLINE_MEDIA_ADVERTISED_ADDRESS") or rtp,
            port_min=_int(env, "TRUNKLINE_MEDIA_PORT_MIN", cls.port_min),
            port_max=_int(env, "TRUNKLINE_MEDIA_PORT_MAX", cls.port_max),
            media_timeout=float(_int(env, "TRUNKLINE_MEDIA_TIMEOUT", int(cls.media_timeout))),
            recording_address=env.get("TRUNKLINE_RECORDING_ADDRESS", ""),
            health_port=_int(env, "TRUNKLINE_MEDIA_HEALTH_PORT", 0),
            workers=_int(env, "TRUNKLINE_MEDIA_WORKERS", 1),
        )
        if not 1 <= settings.workers <= 64:
            raise SystemExit("TRUNKLINE_MEDIA_WORKERS must be between 1 and 64")
        for name in ("rtp_address", "advertised_address"):
            try:
                ipaddress.ip_address(getattr(settings, name))
            except ValueError as error:
                raise SystemExit(f"TRUNKLINE_MEDIA_{name.upper()} must be an IP address") from error
        if ipaddress.ip_address(settings.advertised_address).is_unspecified:
            # c=0.0.0.0 means hold (RFC 3264 8.4): peers would never send to the relay.
            raise SystemExit(
                "TRUNKLINE_MEDIA_ADVERTISED_ADDRESS must be set to a reachable address "
                "when TRUNKLINE_MEDIA_RTP_ADDRESS is a wildcard"
            )
        if settings.media_timeout <= 0:
            raise SystemExit("TRUNKLINE_MEDIA_TIMEOUT must be a positive number of seconds")
        return settings


def _int(env: os._Environ[str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError as error:
        raise SystemExit(f"{name} must be an integer, got {text!r}") from error


async def serve(settings: Settings) -> None:
    """One relay process: the control API and the packets on one loop."""
    ports = PortAllocator(settings.port_min, settings.port_max)
    relay = Relay(
        settings.advertised_address,
        ports,
        bind_address=settings.rtp_address,
        media_timeout=settings.media_timeout,
    )
    fork = None
    if settings.recording_address:
        fork = RecordingFork(relay, settings.recording_address)
        fork.start()
    server = grpc.aio.server(interceptors=server_interceptors())
    media_pb2_grpc.add_MediaServicer_to_server(
        MediaService(relay, recording_enabled=fork is not None), server
    )
    server.add_insecure_port(settings.grpc_address)
    await server.start()
    health = _health(settings)
    tune_gc()
    log.info(
        "media service listening",
        extra={
            "grpc": settings.grpc_address,
            "rtp_address": settings.rtp_address,
            "advertised_address": settings.advertised_address,
            "ports": f"{settings.port_min}-{settings.port_max}",
            "recording": settings.recording_address or None,
        },
    )
    await _stop_requested()
    log.info("media service stopping", extra={"calls": len(relay.calls)})
    await server.stop(grace=2.0)
    await relay.close()
    if fork is not None:
        await fork.close()
    if health is not None:
        health.close()


async def serve_front(settings: Settings) -> int:
    """N relay processes behind this one (see front.py); exits when a worker dies."""
    with tempfile.TemporaryDirectory(prefix="trunkline-media-") as sockets:
        workers = start_workers(
            settings.workers, settings.port_min, settings.port_max, Path(sockets)
        )
        try:
            channels = await open_channels(workers, timeout=30.0)
            server = grpc.aio.server(interceptors=server_interceptors())
            media_pb2_grpc.add_MediaServicer_to_server(Front(channels), server)
            server.add_insecure_port(settings.grpc_address)
            await server.start()
            health = _health(settings)
            log.info(
                "media service listening",
                extra={"grpc": settings.grpc_address, "workers": settings.workers},
            )
            stop = asyncio.ensure_future(_stop_requested())
            died = asyncio.ensure_future(_first_exit(workers))
            await asyncio.wait((stop, died), return_when=asyncio.FIRST_COMPLETED)
            code = 0
            if died.done():
                log.error("media worker exited; stopping", extra={"worker": died.result()})
                code = 1
            stop.cancel()
            died.cancel()
            await server.stop(grace=2.0)
            for channel in channels:
                await channel.close()
            if health is not None:
                health.close()
            return code
        finally:
            await asyncio.to_thread(stop_workers, workers)


async def _first_exit(workers: list[Worker]) -> int:
    while True:
        for worker in workers:
            if worker.process.poll() is not None:
                return worker.index
        await asyncio.sleep(0.5)


async def _stop_requested() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _health(settings: Settings) -> HealthServer | None:
    if not settings.health_port:
        return None
    host = settings.grpc_address.rpartition(":")[0].strip("[]")
    return start_health_server(host, settings.health_port, lambda: True)


def main() -> None:
    setup_service("media")
    settings = Settings.from_env()
    if settings.workers > 1:
        sys.exit(uvloop.run(serve_front(settings)))
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
