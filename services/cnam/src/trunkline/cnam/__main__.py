"""Run the CNAM service: `python -m trunkline.cnam` (settings from TRUNKLINE_* variables, see
trunkline.cnam.settings)."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
import uvloop

from trunkline.cnam.lookup import CallerNames
from trunkline.cnam.provider import HttpProvider
from trunkline.cnam.server import CnamService
from trunkline.cnam.settings import Settings
from trunkline.cnam.usage import Publisher, UsageRecorder
from trunkline.events.usage import UsagePublisher
from trunkline.store import connect_store
from trunkline.telemetry import setup_service
from trunkline.telemetry.grpc_aio import server_interceptors
from trunkline.telemetry.health import HealthServer, start_health_server
from trunkline.v1 import cnam_pb2_grpc

log = logging.getLogger("trunkline.cnam")


def usage_recorder(settings: Settings) -> UsageRecorder | None:
    nats_url = settings.nats_url
    if nats_url is None:
        log.warning(
            "TRUNKLINE_NATS_URL is not set: lookups publish no usage events and are not billed"
        )
        return None

    async def connect() -> Publisher:
        return await UsagePublisher.connect(nats_url, name="trunkline-cnam")

    return UsageRecorder(connect)


async def serve(settings: Settings) -> None:
    repository = await connect_store(settings.store_url)
    provider = (
        HttpProvider(
            settings.provider_url,
            timeout=settings.provider_timeout,
            token=settings.provider_token,
        )
        if settings.provider_url
        else None
    )
    usage = usage_recorder(settings)
    if usage is not None:
        usage.start()
    names = CallerNames(
        repository,
        provider=provider,
        cache_ttl=settings.cache_ttl,
        cache_size=settings.cache_size,
        record=usage.record if usage is not None else None,
    )
    server = grpc.aio.server(interceptors=server_interceptors())
    cnam_pb2_grpc.add_CnamServicer_to_server(CnamService(names), server)
    server.add_insecure_port(settings.grpc_address)
    await server.start()
    health = _health(settings)
    log.info(
        "cnam service listening",
        extra={
            "grpc": settings.grpc_address,
            "provider": settings.provider_host,
            "provider_timeout": settings.provider_timeout,
            "cache_ttl": settings.cache_ttl,
            "cache_size": settings.cache_size,
            "usage_events": usage is not None,
        },
    )
    await _stop_requested()
    log.info("cnam service stopping")
    await server.stop(grace=2.0)
    if usage is not None:
        await usage.close()
    if provider is not None:
        await provider.close()
    await repository.close()
    if health is not None:
        health.close()


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
    setup_service("cnam")
    # httpx logs every request's URL, which may hold the provider's key; failures are logged
    # here instead, without it.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uvloop.run(serve(Settings.from_env()))


if __name__ == "__main__":
    main()
