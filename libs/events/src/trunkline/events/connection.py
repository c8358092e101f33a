"""NATS connection helpers shared by the publishers and subscribers of this package."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS


async def flush(nc: NATS, timeout: int = 1) -> None:
    """Return once the server has processed everything sent on `nc` so far.

    `nc.flush()` alone does not promise that in nats-py (checked at 2.16): it writes its PING
    to the socket at once, while earlier PUB and SUB commands wait for the client's flusher
    task, so the PONG can arrive before the server has seen them. publish() and subscribe()
    have already woken that task; yielding to the event loop once lets it write them first,
    and then the PONG does confirm them. Raises nats' FlushTimeoutError after `timeout`
    seconds, ConnectionClosedError on a closed connection.
    """
    await asyncio.sleep(0)
    await nc.flush(timeout=timeout)
