"""Usage events on the JetStream stream USAGE: services publish what billing charges apart
from call minutes (today: CNAM lookups), billing consumes.

Like the call events they are billing's raw material, so they go to JetStream with file
storage and a seven-day maximum age, and a retry of an event that JetStream already stored
is dropped by its message ID:

    publisher = await UsagePublisher.connect("nats://127.0.0.1:4222", name="trunkline-cnam")
    lookup = CnamLookup(account_sid=..., trunk_sid=..., call_sid=..., number=..., found=True)
    lookup.time.GetCurrentTime()
    await publisher.publish_cnam(lookup)  # returns once JetStream has stored it

Subjects: `trunkline.usage.<account_sid>.<kind>` (kind `cnam`), so a consumer can take one
account (`trunkline.usage.AC....>`) or one kind of every account (`trunkline.usage.*.cnam`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final, Self

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter

from trunkline.events.calls import DEFAULT_ACK_TIMEOUT, DEFAULT_MAX_AGE, MSG_ID_HEADER
from trunkline.events.connection import ConnectionEvents, close, connect, ensure_stream
from trunkline.events.subjects import subject_token
from trunkline.telemetry.propagation import inject
from trunkline.v1.cnam_pb2 import CnamLookup

__all__ = [
    "USAGE_KINDS",
    "USAGE_PREFIX",
    "USAGE_STREAM",
    "USAGE_WILDCARD",
    "UsageEventNotPublished",
    "UsagePublisher",
    "cnam_message_id",
    "ensure_usage_stream",
    "usage_stream_config",
    "usage_subject",
]

USAGE_PREFIX: Final = "trunkline.usage"
USAGE_WILDCARD: Final = f"{USAGE_PREFIX}.>"
USAGE_STREAM: Final = "USAGE"
USAGE_KINDS: Final = ("cnam",)
# Retries of one event within this window are stored once.
DUPLICATE_WINDOW: Final = timedelta(minutes=2)

log = logging.getLogger("trunkline.events.usage")
_tracer = trace.get_tracer("trunkline.events.usage")

PUBLISH_FAILURES = Counter(
    "trunkline_usage_events_publish_failures",
    "Usage events that JetStream did not confirm (the publisher's caller decides on a retry)",
    ["kind"],
)


class UsageEventNotPublished(Exception):
    """JetStream did not confirm the event; publishing the same event again is safe."""


def usage_subject(account_sid: str, kind: str) -> str:
    """`trunkline.usage.<account_sid>.<kind>`; ValueError for an unusable part."""
    if kind not in USAGE_KINDS:
        raise ValueError(f"usage kind {kind!r} is not one of {list(USAGE_KINDS)}")
    return f"{USAGE_PREFIX}.{subject_token(account_sid, 'account_sid')}.{kind}"


def cnam_message_id(lookup: CnamLookup) -> str:
    """One call's lookup of one number is one charge, however often it is retried."""
    return f"cnam.{lookup.call_sid}.{lookup.number}"


def usage_stream_config(
    *, max_age: timedelta = DEFAULT_MAX_AGE, replicas: int = 1, storage: StorageType | None = None
) -> StreamConfig:
    return StreamConfig(
        name=USAGE_STREAM,
        description="Trunkline billable usage other than call minutes (CNAM lookups)",
        subjects=[USAGE_WILDCARD],
        retention=RetentionPolicy.LIMITS,
        storage=storage or StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age.total_seconds(),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
        num_replicas=replicas,
    )


async def ensure_usage_stream(
    js: JetStreamContext, *, max_age: timedelta = DEFAULT_MAX_AGE, replicas: int = 1
) -> StreamInfo:
    """Create the USAGE stream, or bring an existing one to this configuration (safe from
    every publisher at start, as `trunkline.events.calls.ensure_calls_stream`)."""
    return await ensure_stream(js, usage_stream_config(max_age=max_age, replicas=replicas))


class UsagePublisher:
    """Publishes usage events into the USAGE stream.

    `publish_cnam` returns once JetStream has stored the event and raises
    UsageEventNotPublished when it could not confirm that; retrying the same event is safe
    within the stream's duplicate window (two minutes).
    """

    def __init__(
        self,
        nc: NATS,
        *,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        events: ConnectionEvents | None = None,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=ack_timeout)
        self._ack_timeout = ack_timeout
        self._events = events

    @property
    def jetstream(self) -> JetStreamContext:
        return self._js

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str = "trunkline-usage-events",
        *,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        ensure_stream: bool = True,
        max_age: timedelta = DEFAULT_MAX_AGE,
        replicas: int = 1,
    ) -> Self:
        """Connect to NATS at `url` (comma-separated for a cluster) as client `name`, and
        (with `ensure_stream`) create or update the USAGE stream. Raises when no server
        answers now; afterwards the client reconnects for as long as the process runs."""
        nc, events = await connect(url, name)
        publisher = cls(nc, ack_timeout=ack_timeout, events=events)
        if ensure_stream:
            try:
                await ensure_usage_stream(publisher.jetstream, max_age=max_age, replicas=replicas)
            except BaseException:
                await nc.close()
                raise
        return publisher

    async def publish_cnam(self, lookup: CnamLookup) -> PubAck:
        """Store `lookup` in the USAGE stream; its SIDs, number and time must be set.

        Raises ValueError for an event that cannot be published as it is, and
        UsageEventNotPublished when JetStream did not confirm it.
        """
        if not (lookup.call_sid and lookup.number):
            raise ValueError("a CnamLookup needs its call_sid and number (its message ID)")
        if not lookup.HasField("time"):
            raise ValueError("a CnamLookup needs its time")
        subject = usage_subject(lookup.account_sid, "cnam")
        with _tracer.start_as_current_span(
            "usage.publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": subject,
                "trunkline.call_sid": lookup.call_sid,
                "trunkline.account_sid": lookup.account_sid,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            headers = inject({})
            headers[MSG_ID_HEADER] = cnam_message_id(lookup)
            try:
                ack = await self._js.publish(
                    subject,
                    lookup.SerializeToString(),
                    timeout=self._ack_timeout,
                    stream=USAGE_STREAM,
                    headers=headers,
                )
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                PUBLISH_FAILURES.labels(kind="cnam").inc()
                raise UsageEventNotPublished(
                    f"cnam lookup of {lookup.call_sid}: {error!r}"
                ) from error
            span.set_attribute("messaging.message.id", headers[MSG_ID_HEADER])
            span.set_attribute("trunkline.stream_sequence", ack.seq)
            if ack.duplicate:
                span.set_attribute("trunkline.duplicate", True)
            return ack

    async def close(self) -> None:
        """Wait for what is in flight, then disconnect; while NATS is unreachable, just close."""
        await close(self._nc, self._events)
