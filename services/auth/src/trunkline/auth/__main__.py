"""Run the auth service: `python -m trunkline.auth` (settings from TRUNKLINE_* variables, see
trunkline.auth.settings)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal

import grpc
import uvloop

from trunkline.auth.lockout import Lockout
from trunkline.auth.rules import Authorizer
from trunkline.auth.server import AuthService
from trunkline.auth.settings import Settings
from trunkline.digest.sip import DigestServer, NonceCountGuard
from trunkline.store import connect_store
from trunkline.store.cache import ConfigCache
from trunkline.telemetry import setup_service
from trunkline.telemetry.grpc_aio import server_interceptors
from trunkline.telemetry.health import HealthServer, start_health_server
from trunkline.v1 import auth_pb2_grpc

log = logging.getLogger("trunkline.auth")


def digest_server(settings: Settings) -> DigestServer:
    secret = settings.nonce_secret
    if secret is None:
        log.warning(
            "TRUNKLINE_AUTH_NONCE_SECRET is not set: digest nonces are signed with a secret "
            "generated for this process, so they fail after a restart and at any other auth "
            "process; give every auth pod the same secret in production"
        )
        secret = secrets.token_bytes(32)
    return DigestServer(
        settings.realm,
        secret,
        previous_secrets=settings.previous_nonce_secrets,
        # A nonce answers only from the address it was sent to, and each nonce count once.
        bind_source=True,
        replay_guard=NonceCountGuard(),
    )


async def serve(settings: Settings) -> None:
    repository = await connect_store(settings.store_url)
    config = ConfigCache(repository, ttl=settings.cache_ttl)
    if settings.nats_url:
        await config.follow(settings.nats_url, name="trunkline-auth")
    lockout = Lockout(
        failures=settings.lockout_failures,
        window=settings.lockout_window,
        duration=settings.lockout_seconds,
    )
    authorizer = Authorizer(
        config, digest_server(settings), lockout, verdict_reuse=settings.verdict_reuse
    )
    server = grpc.aio.server(interceptors=server_interceptors())
    auth_pb2_grpc.add_AuthServicer_to_server(AuthService(authorizer), server)
    server.add_insecure_port(settings.grpc_address)
    await server.start()
    health = _health(settings)
    log.info(
        "auth service listening",
        extra={
            "grpc": settings.grpc_address,
            "realm": settings.realm,
            "config_notices": bool(settings.nats_url),
            "cache_ttl": settings.cache_ttl,
            "lockout_failures": settings.lockout_failures,
            "lockout_window": settings.lockout_window,
            "lockout_seconds": settings.lockout_seconds,
        },
    )
    await _stop_requested()
    log.info("auth service stopping")
    await server.stop(grace=2.0)
    await config.close()
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
    setup_service("auth")
    uvloop.run(serve(Settings.from_env()))


if __name__ == "__main__":
    main()
