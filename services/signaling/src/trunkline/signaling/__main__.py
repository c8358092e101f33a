"""Run the signaling service: `python -m trunkline.signaling` (settings from TRUNKLINE_*)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from dataclasses import dataclass

import uvloop

from trunkline.events.calls import CallEventPublisher
from trunkline.signaling.carriers import CarrierConfigError, carriers_from_env
from trunkline.signaling.clients import AuthClient, CnamClient, MediaClient
from trunkline.signaling.records import CallRecorder
from trunkline.signaling.service import Signaling, SignalingConfig
from trunkline.signaling.sip.timers import TimerConfig
from trunkline.signaling.sip.transaction import TransactionLayer
from trunkline.signaling.sip.transport import Endpoint, client_tls_context, server_tls_context
from trunkline.store import connect_store
from trunkline.store.cache import ConfigCache
from trunkline.telemetry import setup_service, tune_gc
from trunkline.telemetry.health import start_health_server

log = logging.getLogger("trunkline.signaling")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5060
    tls_port: int = 5061
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca_file: str = ""  # CAs to trust for TLS the platform opens (to PBXs), beside the system's
    zone: str = "trunkline.local"
    edge: str = "local"
    store_url: str = "sqlite:///./data/trunkline.db"
    nats_url: str = ""
    auth_address: str = "127.0.0.1:7200"
    media_address: str = "127.0.0.1:7100"
    cnam_address: str = ""
    health_port: int = 0
    min_max_forwards: int = 20
    max_call_duration: float = 86400.0
    default_cps: float = 1.0
    default_concurrent_calls: int = 0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            host=env.get("TRUNKLINE_SIP_HOST", cls.host),
            port=_number(env, "TRUNKLINE_SIP_PORT", cls.port),
            tls_port=_number(env, "TRUNKLINE_SIP_TLS_PORT", cls.tls_port),
            tls_cert=env.get("TRUNKLINE_SIP_TLS_CERT", ""),
            tls_key=env.get("TRUNKLINE_SIP_TLS_KEY", ""),
            tls_ca_file=env.get("TRUNKLINE_SIP_TLS_CA_FILE", ""),
            zone=env.get("TRUNKLINE_ZONE", cls.zone),
            edge=env.get("TRUNKLINE_EDGE", cls.edge),
            store_url=env.get("TRUNKLINE_STORE", cls.store_url),
            nats_url=env.get("TRUNKLINE_NATS_URL", ""),
            auth_address=env.get("TRUNKLINE_AUTH_ADDRESS", cls.auth_address),
            media_address=env.get("TRUNKLINE_MEDIA_ADDRESS", cls.media_address),
            cnam_address=env.get("TRUNKLINE_CNAM_ADDRESS", ""),
            health_port=_number(env, "TRUNKLINE_SIGNALING_HEALTH_PORT", 0),
            min_max_forwards=_number(env, "TRUNKLINE_MIN_MAX_FORWARDS", cls.min_max_forwards),
            max_call_duration=float(
                _number(env, "TRUNKLINE_MAX_CALL_DURATION", int(cls.max_call_duration))
            ),
            default_cps=float(_number(env, "TRUNKLINE_TRUNK_CPS", int(cls.default_cps))),
            default_concurrent_calls=_number(env, "TRUNKLINE_TRUNK_CONCURRENT_CALLS", 0),
        )


def _number(env: os._Environ[str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError as error:
        raise SystemExit(f"{name} must be an integer, got {text!r}") from error


def _client_tls(ca_file: str) -> ssl.SSLContext:
    """TLS 1.2+ toward PBXs, verifying their certificates against the system's CAs and, if
    given, the CAs of TRUNKLINE_SIP_TLS_CA_FILE (a PBX with a private CA)."""
    context = client_tls_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


async def serve(settings: Settings) -> None:
    try:
        gateways = carriers_from_env()
    except CarrierConfigError as error:
        raise SystemExit(f"TRUNKLINE_CARRIERS_FILE: {error}") from error
    repo = await connect_store(settings.store_url)
    cache = ConfigCache(repo)
    if settings.nats_url:
        await cache.follow(settings.nats_url, name="trunkline-signaling")
    # The service sends 100 Trying itself once a request is authenticated; the layer's
    # automatic one would answer sources that must get no answer at all.
    endpoint = Endpoint(TransactionLayer(TimerConfig(trying_delay=None)))
    await endpoint.listen_udp(settings.host, settings.port)
    await endpoint.listen_stream("TCP", settings.host, settings.port)
    if settings.tls_cert and settings.tls_key:
        await endpoint.listen_stream(
            "TLS",
            settings.host,
            settings.tls_port,
            server_ssl=server_tls_context(settings.tls_cert, settings.tls_key),
            client_ssl=_client_tls(settings.tls_ca_file),
        )
    publisher = None
    if settings.nats_url:
        publisher = await CallEventPublisher.connect(settings.nats_url, name="trunkline-signaling")
    else:
        log.warning("TRUNKLINE_NATS_URL is not set: call events are not published")
    recorder = CallRecorder(repo, publisher)
    recorder.start()
    media = MediaClient(settings.media_address)
    auth = AuthClient(settings.auth_address)
    cnam = CnamClient(settings.cnam_address) if settings.cnam_address else None
    signaling = Signaling(
        endpoint,
        SignalingConfig(
            zone=settings.zone,
            edge=settings.edge,
            min_max_forwards=settings.min_max_forwards,
            max_call_duration=settings.max_call_duration,
            default_cps=settings.default_cps,
            default_concurrent_calls=settings.default_concurrent_calls,
            gateways=gateways,
        ),
        cache,
        auth,
        media,
        hooks=recorder,
        cnam=cnam,
    )

    async def follow_media() -> None:
        async for event in media.events():
            if event.kind == event.MEDIA_TIMEOUT:
                signaling.media_timeout(event.call_id)

    media_events = asyncio.ensure_future(follow_media())
    health = None
    if settings.health_port:
        health = start_health_server(settings.host, settings.health_port, lambda: True)
    log.info(
        "signaling listening",
        extra={
            "udp_tcp": f"{settings.host}:{settings.port}",
            "tls": f"{settings.host}:{settings.tls_port}" if settings.tls_cert else None,
            "zone": settings.zone,
            "edge": settings.edge,
            "gateways": [g.name for g in gateways],
        },
    )
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    media_events.cancel()
    await endpoint.close()
    await recorder.close()
    if publisher is not None:
        await publisher.close()
    await media.close()
    await signaling.fetcher.aclose()
    await auth.close()
    if cnam is not None:
        await cnam.close()
    await cache.close()
    await repo.close()
    if health is not None:
        health.close()


def main() -> None:
    setup_service("signaling")
    uvloop.run(serve(Settings.from_env()))


if __name__ == "__main__":
    main()
