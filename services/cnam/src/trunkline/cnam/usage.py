"""The usage events of lookups, queued so that a lookup never waits for (or fails with) NATS.

`record` only queues the CnamLookup; one task connects to NATS (at start, and again after a
failed start, so the service runs while NATS is down) and publishes what is queued into the
USAGE stream, retrying a batch with backoff until JetStream confirms it. A retried event is
stored once (its message ID is the call and the number). The queue is bounded: when it is
full, because NATS has been away for long, a new event is dropped and logged with its call
SID, so memory stays bounded and the loss is visible. What is still queued at shutdown is
published for a bounded time, and what remains is logged the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from prometheus_client import Counter, Gauge

from trunkline.v1.cnam_pb2 import CnamLookup

__all__ = ["Publisher", "UsageRecorder"]

log = logging.getLogger("trunkline.cnam.usage")

_RETRY_FIRST = 0.2
_RETRY_MAX = 5.0
_BATCH = 256  # events published together at most

PUBLISHED = Counter(
    "trunkline_cnam_usage_events_published", "Lookup usage events JetStream confirmed"
)
DROPPED = Counter(
    "trunkline_cnam_usage_events_dropped",
    "Lookup usage events never published (queue full, or still queued at shutdown)",
    ["reason"],
)
QUEUED = Gauge("trunkline_cnam_usage_events_queued", "Lookup usage events waiting for NATS")


class Publisher(Protocol):
    """What the recorder needs of trunkline.events.usage.UsagePublisher."""

    async def publish_cnam(self, lookup: CnamLookup) -> object: ...

    async def close(self) -> None: ...


Connect = Callable[[], Awaitable[Publisher]]


class UsageRecorder:
    def __init__(self, connect: Connect, *, max_queued: int = 10_000) -> None:
        self._connect = connect
        self._publisher: Publisher | None = None
        self._queue: asyncio.Queue[CnamLookup] = asyncio.Queue(maxsize=max_queued)
        self._in_flight: list[CnamLookup] = []
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    @property
    def pending(self) -> int:
        """Events queued or being published."""
        return self._queue.qsize() + len(self._in_flight)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="usage-events")

    def record(self, lookup: CnamLookup) -> None:
        """Queue `lookup` for publishing; never blocks, never raises."""
        try:
            self._queue.put_nowait(lookup)
        except asyncio.QueueFull:
            DROPPED.labels(reason="queue_full").inc()
            log.error(
                "usage event dropped: the queue is full (NATS unreachable?); lookup not billed",
                extra=_identity(lookup),
            )
            return
        QUEUED.set(self.pending)

    async def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued for up to `timeout` seconds, log what remains, disconnect."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline and self._task is not None:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        left = self._in_flight
        self._in_flight = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for lookup in left:
            DROPPED.labels(reason="shutdown").inc()
            log.error(
                "usage event not published at shutdown; lookup not billed",
                extra=_identity(lookup),
            )
        QUEUED.set(0)
        if self._publisher is not None:
            await self._publisher.close()

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < _BATCH:
                batch.append(self._queue.get_nowait())
            # Kept until confirmed, so that close() can name them if it never is.
            self._in_flight = batch
            await self._publish_until_confirmed(batch)
            self._in_flight = []
            self.published += len(batch)
            PUBLISHED.inc(len(batch))
            QUEUED.set(self.pending)

    async def _publish_until_confirmed(self, batch: list[CnamLookup]) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                publisher = await self._connected()
                # Concurrently on one connection: JetStream acknowledges them together. A
                # retried batch publishes some events twice; the stream drops the duplicates.
                await asyncio.gather(*(publisher.publish_cnam(lookup) for lookup in batch))
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "usage events not published; retrying",
                    extra={
                        "call_sids": sorted({lookup.call_sid for lookup in batch}),
                        "error": repr(error),
                        "retry_in": delay,
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)

    async def _connected(self) -> Publisher:
        if self._publisher is None:
            self._publisher = await self._connect()
            log.info("usage events publisher connected")
        return self._publisher


def _identity(lookup: CnamLookup) -> dict[str, str]:
    return {
        "account_sid": lookup.account_sid,
        "trunk_sid": lookup.trunk_sid,
        "call_sid": lookup.call_sid,
    }
