"""NATS connection helpers shared by the publishers and subscribers of this package."""

from __future__ import annotations

import contextlib
import logging

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo

log = logging.getLogger("trunkline.events")


class ConnectionEvents:
    """Logs what happens to a client's connection, except its own deliberate close."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closing = False

    async def error(self, error: Exception) -> None:
        log.warning("NATS client error", extra={"client": self.name, "error": repr(error)})

    async def disconnected(self) -> None:
        if not self.closing:
            log.warning("disconnected from NATS; reconnecting", extra={"client": self.name})

    async def reconnected(self) -> None:
        log.info("reconnected to NATS", extra={"client": self.name})


async def connect(url: str, name: str) -> tuple[NATS, ConnectionEvents]:
    """Connect to `url` (comma-separated for a cluster) as `name`, reconnecting forever.

    Raises when no server answers now; later outages are logged through the returned events.
    """
    events = ConnectionEvents(name)
    nc = await nats.connect(
        [server.strip() for server in url.split(",") if server.strip()],
        name=name,
        max_reconnect_attempts=-1,
        error_cb=events.error,
        disconnected_cb=events.disconnected,
        reconnected_cb=events.reconnected,
    )
    return nc, events


async def close(nc: NATS, events: ConnectionEvents | None) -> None:
    """Send what is buffered, then disconnect; while the server is unreachable, just close."""
    if nc.is_closed:
        return
    if events is not None:
        events.closing = True
    if nc.is_connected:
        await nc.drain()
    else:
        # drain() refuses while reconnecting.
        await nc.close()


async def flush(nc: NATS, timeout: float = 1.0) -> None:
    """Return once the server has processed everything sent on `nc` so far.

    `nc.flush()` alone does not promise that in nats-py (checked at 2.16): it writes its PING
    to the socket at once, while earlier PUB and SUB commands wait in a buffer for the
    client's flusher task, so the PONG can come back before the server has seen them (a test
    that subscribed, flushed and then had another client publish lost the first message about
    one run in seven). So the barrier is a message of our own instead: a subscription on a
    fresh inbox and a publish to it travel behind everything buffered, and the server handles
    one client's commands in order, so when that message comes back the server has processed
    all that went before it. Needs echo (nats-py's default). Raises nats' FlushTimeoutError
    after `timeout` seconds, ConnectionClosedError on a closed connection.
    """
    inbox = nc.new_inbox()
    barrier = await nc.subscribe(inbox)
    try:
        await nc.publish(inbox)
        try:
            await barrier.next_msg(timeout=timeout)
        except TimeoutError as error:  # nats-py's, or asyncio's on some paths
            raise nats.errors.FlushTimeoutError from error
    finally:
        with contextlib.suppress(nats.errors.Error):
            await barrier.unsubscribe()


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    """Create a JetStream stream, or bring an existing one to `config`.

    Safe to run from every publisher at start: an update keeps the stored messages, and two
    processes creating it at once both end with the same stream. Raises nats' APIError when
    the server refuses (an existing stream on memory storage cannot become file storage).
    """
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            return await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            pass  # created by another process since we looked: update it like any other
    return await js.update_stream(config)
