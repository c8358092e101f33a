"""Run the API service: `python -m trunkline.api` (settings from TRUNKLINE_* variables)."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from trunkline.api.app import build_app
from trunkline.api.context import Announcer, Platform, SilentAnnouncer
from trunkline.api.settings import Settings
from trunkline.store import connect_store
from trunkline.telemetry import setup_service

log = logging.getLogger("trunkline.api")


async def serve(settings: Settings) -> None:
    repo = await connect_store(settings.store_url)  # a bad store URL fails at start
    announcer: Announcer
    if settings.nats_url:
        from trunkline.events.config import ConfigPublisher

        announcer = await ConfigPublisher.connect(settings.nats_url, name="trunkline-api")
    else:
        log.warning("TRUNKLINE_NATS_URL is not set: configuration changes are not announced")
        announcer = SilentAnnouncer()
    platform = Platform(settings, repo, announcer)
    app = build_app(platform, on_shutdown=[announcer.close, repo.close])
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        server_header=False,
    )
    log.info("API listening", extra={"url": settings.base_url})
    await uvicorn.Server(config).serve()


def main() -> None:
    setup_service("api")
    settings = Settings.from_env()
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
