"""Call lifecycle events on the JetStream stream CALLS: signaling publishes, billing consumes.

Unlike configuration notices these are the CDR's raw material, so they go to JetStream: the
server stores each one (file storage) before acknowledging it, and keeps it for the stream's
maximum age whether or not a consumer was listening. Durable consumers resume where they
acknowledged, so billing or recording being down loses nothing.

    publisher = await CallEventPublisher.connect("nats://127.0.0.1:4222", name="signaling")
    event = CallEvent(kind=CallEvent.STARTED, call_sid=..., account_sid=..., ...)
    event.time.GetCurrentTime()
    await publisher.publish(event)  # returns once JetStream has stored it

    async def on_event(event: CallEvent, context: Context) -> None: ...
    subscription = await subscribe_calls(js, on_event, durable="billing")

A message published within a trace carries its W3C trace context in its headers (one
published outside any trace starts no trace of its own), and every message a `Nats-Msg-Id`
made of the call SID, the kind and the event time, so publishing the same event again (a
retry after a lost acknowledgement) is dropped by the stream's duplicate window instead of
counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Final, Self

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter

from trunkline.events.connection import ConnectionEvents, close, connect, ensure_stream
from trunkline.events.subjects import CALLS_STREAM, CALLS_WILDCARD, call_subject
from trunkline.telemetry.propagation import extract, inject
from trunkline.v1.calls_pb2 import CallEvent

DEFAULT_MAX_AGE: Final = timedelta(days=7)
# Retries of one event within this window are stored once (JetStream's default is 2 min).
DUPLICATE_WINDOW: Final = timedelta(minutes=2)
DEFAULT_ACK_TIMEOUT: Final = 2.0  # seconds to wait for JetStream to confirm a publish
MSG_ID_HEADER: Final = "Nats-Msg-Id"

CallEventCallback = Callable[[CallEvent, Context], Awaitable[None]]

log = logging.getLogger("trunkline.events.calls")
_tracer = trace.get_tracer("trunkline.events.calls")

PUBLISH_FAILURES = Counter(
    "trunkline_call_events_publish_failures",
    "Call events that JetStream did not confirm (the publisher's caller decides on a retry)",
    ["kind"],
)
RECEIVE_FAILURES = Counter(
    "trunkline_call_events_receive_failures",
    "Call events that could not be decoded (dropped) or whose handler raised (redelivered)",
    ["reason"],
)


class CallEventNotPublished(Exception):
    """JetStream did not confirm the event; publishing the same event again is safe."""


def kind_name(kind: CallEvent.Kind.ValueType) -> str:
    """`started`, `ringing`, `answered` or `ended`: the last token of the subject."""
    return CallEvent.Kind.Name(kind).lower()


def message_id(event: CallEvent) -> str:
    """What JetStream deduplicates on: one call, one kind, one moment."""
    return f"{event.call_sid}.{kind_name(event.kind)}.{event.time.seconds}.{event.time.nanos}"


def _check(event: CallEvent) -> None:
    if event.kind == CallEvent.KIND_UNSPECIFIED:
        raise ValueError("a CallEvent needs a kind")
    if not event.HasField("time"):
        raise ValueError("a CallEvent needs its time (also what makes a retry a duplicate)")


def _confirmed(future: asyncio.Future[PubAck]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def calls_stream_config(
    *, max_age: timedelta = DEFAULT_MAX_AGE, replicas: int = 1, storage: StorageType | None = None
) -> StreamConfig:
    return StreamConfig(
        name=CALLS_STREAM,
        description="Trunkline call lifecycle events (started, ringing, answered, ended)",
        subjects=[CALLS_WILDCARD],
        retention=RetentionPolicy.LIMITS,
        storage=storage or StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age.total_seconds(),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
        num_replicas=replicas,
    )


async def ensure_calls_stream(
    js: JetStreamContext, *, max_age: timedelta = DEFAULT_MAX_AGE, replicas: int = 1
) -> StreamInfo:
    """Create the CALLS stream, or bring an existing one to this configuration.

    Safe to run from every publisher at start: an update keeps the stored events, and two
    processes creating it at once both end with the same stream. Raises nats' APIError when
    the server refuses (an existing stream on memory storage cannot become file storage).
    """
    return await ensure_stream(js, calls_stream_config(max_age=max_age, replicas=replicas))


class CallEventPublisher:
    """Publishes CallEvents on `trunkline.calls.<account_sid>.<call_sid>.<kind>`.

    `publish` returns once JetStream has stored the event and raises CallEventNotPublished
    when it could not confirm that (NATS down longer than the ack timeout, stream missing):
    an event is a CDR's raw material, so the caller must know. Retrying the same event is
    safe within the stream's duplicate window (two minutes).
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
        name: str = "trunkline-call-events",
        *,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        ensure_stream: bool = True,
        max_age: timedelta = DEFAULT_MAX_AGE,
        replicas: int = 1,
    ) -> Self:
        """Connect to NATS at `url` (comma-separated for a cluster) as client `name`.

        With `ensure_stream` (the default) the CALLS stream is created or updated with
        `max_age` and `replicas`; pass False where the stream is managed elsewhere. Raises
        when no server answers at start. Once connected the client reconnects for as long as
        the process runs; publishes meanwhile wait up to the ack timeout, then raise.
        """
        nc, events = await connect(url, name)
        publisher = cls(nc, ack_timeout=ack_timeout, events=events)
        if ensure_stream:
            try:
                await ensure_calls_stream(publisher.jetstream, max_age=max_age, replicas=replicas)
            except BaseException:
                await nc.close()
                raise
        return publisher

    async def publish(self, event: CallEvent) -> PubAck:
        """Store `event` in the CALLS stream; its `kind`, SIDs and `time` must be set.

        Raises ValueError for an event that cannot be published as it is, and
        CallEventNotPublished when JetStream did not confirm it.
        """
        _check(event)
        kind = kind_name(event.kind)
        subject = call_subject(event.account_sid, event.call_sid, kind)
        if not trace.get_current_span().get_span_context().is_valid:
            # Outside any trace (signaling's recorder publishes from a task of its own): no
            # PRODUCER span, which would be a one-span trace of its own in Jaeger for every
            # event, and cost signaling ~5 % of its CPU at 330 calls/s (py-spy).
            return await self._send(event, kind, subject, {MSG_ID_HEADER: message_id(event)})
        with _tracer.start_as_current_span(
            "calls.publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": subject,
                "trunkline.call_sid": event.call_sid,
                "trunkline.account_sid": event.account_sid,
                "trunkline.call_event": kind,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            headers = inject({})
            headers[MSG_ID_HEADER] = message_id(event)
            try:
                ack = await self._send(event, kind, subject, headers)
            except CallEventNotPublished as error:
                cause = error.__cause__ or error
                span.record_exception(cause)
                span.set_status(Status(StatusCode.ERROR, f"{type(cause).__name__}: {cause}"))
                raise
            span.set_attribute("messaging.message.id", headers[MSG_ID_HEADER])
            span.set_attribute("trunkline.stream_sequence", ack.seq)
            if ack.duplicate:
                span.set_attribute("trunkline.duplicate", True)
            return ack

    async def publish_many(self, events: Sequence[CallEvent], *, chunk: int = 16) -> None:
        """Store every event of `events`, as `publish` does each, but with the acks awaited
        together: all are sent first (in order, `chunk` at a time with a loop turn between,
        so the loop's other work runs meanwhile), then every ack is awaited within the ack
        timeout. An ack per event was a round trip per event: under load each came back
        several loop turns later, and a recorder publishing that way fell behind its calls.

        Raises ValueError for an event that cannot be published as it is (before sending
        any), and CallEventNotPublished when JetStream did not confirm them all; publishing
        them all again is safe (duplicates are dropped). Within a trace each event gets its
        PRODUCER span, through `publish`."""
        for event in events:
            _check(event)
        subjects = [call_subject(e.account_sid, e.call_sid, kind_name(e.kind)) for e in events]
        if trace.get_current_span().get_span_context().is_valid:
            await asyncio.gather(*(self.publish(event) for event in events))
            return
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for index, (event, subject) in enumerate(zip(events, subjects, strict=True)):
                if index and index % chunk == 0:
                    await asyncio.sleep(0)
                futures.append(
                    await self._js.publish_async(
                        subject,
                        event.SerializeToString(),
                        stream=CALLS_STREAM,
                        headers={MSG_ID_HEADER: message_id(event)},
                    )
                )
            await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout)
        except Exception as error:
            unconfirmed = [
                event
                for index, event in enumerate(events)
                if index >= len(futures) or not _confirmed(futures[index])
            ]
            for future in futures:
                future.cancel()
            for event in unconfirmed:
                PUBLISH_FAILURES.labels(kind=kind_name(event.kind)).inc()
            log.warning(
                "call events not confirmed by JetStream",
                extra={
                    "events": len(events),
                    "unconfirmed": len(unconfirmed),
                    "error": repr(error),
                },
            )
            raise CallEventNotPublished(
                f"{len(unconfirmed)} of {len(events)} events: {error!r}"
            ) from error
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    async def _send(
        self, event: CallEvent, kind: str, subject: str, headers: dict[str, str]
    ) -> PubAck:
        try:
            return await self._js.publish(
                subject,
                event.SerializeToString(),
                timeout=self._ack_timeout,
                stream=CALLS_STREAM,
                headers=headers,
            )
        except Exception as error:
            PUBLISH_FAILURES.labels(kind=kind).inc()
            log.warning(
                "call event not confirmed by JetStream",
                extra={
                    "call_sid": event.call_sid,
                    "account_sid": event.account_sid,
                    "kind": kind,
                    "error": repr(error),
                },
            )
            raise CallEventNotPublished(f"{kind} of {event.call_sid}: {error!r}") from error

    async def close(self) -> None:
        """Wait for what is in flight, then disconnect; while NATS is unreachable, just close."""
        await close(self._nc, self._events)


_FETCH_POLL = 1.0  # seconds a pull request waits on the server for new events


class CallSubscription:
    """A durable pull consumer of the CALLS stream, fed to a callback one event at a time."""

    def __init__(
        self,
        psub: JetStreamContext.PullSubscription,
        task: asyncio.Task[None],
        stopping: asyncio.Event,
    ) -> None:
        self._psub = psub
        self._task = task
        self._stopping = stopping

    @property
    def subscription(self) -> JetStreamContext.PullSubscription:
        return self._psub

    async def stop(self) -> None:
        """Stop fetching; the durable consumer stays on the server, to resume later.

        The fetch in flight is let finish (within its one-second poll) and what it brought is
        handled: cancelling it would leave its pull request on the server, which would take
        the next events for this dead subscriber, and they would come back to the durable
        consumer only after `ack_wait`."""
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _FETCH_POLL + 5.0)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(nats.errors.Error):
            await self._psub.unsubscribe()


async def subscribe_calls(
    js: JetStreamContext,
    callback: CallEventCallback,
    *,
    durable: str,
    subject: str = CALLS_WILDCARD,
    ack_wait: float = 30.0,
    batch: int = 64,
) -> CallSubscription:
    """Call `callback(event, context)` for each event on `subject`, in stream order.

    `durable` names the consumer on the server (created on first use with `subject` as its
    filter), so a restarted subscriber resumes after the last event it acknowledged. An event
    is acknowledged when the callback returns; if the callback raises, it is redelivered after
    a second (and after `ack_wait` if the subscriber dies mid-way). An undecodable message is
    terminated: no redelivery would make it readable. `context` is the publisher's trace
    context; the callback runs inside a CONSUMER span that continues it.
    """
    psub = await js.pull_subscribe(
        subject,
        durable=durable,
        stream=CALLS_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait),
    )

    stopping = asyncio.Event()

    async def fetch_forever() -> None:
        while not stopping.is_set():
            try:
                msgs = await psub.fetch(batch, timeout=_FETCH_POLL)
            except TimeoutError:
                # Nothing new within the poll interval. nats-py (2.16) raises its own
                # TimeoutError, or asyncio's when the poll's deadline passes between its
                # two pull requests: catching only the first ended this loop for good.
                continue
            except nats.errors.Error as error:
                # A reconnect in progress, typically; the consumer is still on the server.
                log.warning("fetching call events failed", extra={"error": repr(error)})
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await _handle(msg, callback)

    task = asyncio.create_task(fetch_forever(), name=f"subscribe_calls:{durable}")
    return CallSubscription(psub, task, stopping)


async def _handle(msg: Msg, callback: CallEventCallback) -> None:
    context = extract(msg.headers or {})
    with _tracer.start_as_current_span(
        "calls.process",
        context=context,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": msg.subject,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            event = CallEvent.FromString(msg.data)
        except DecodeError as error:
            _receive_failed(span, error, "decode")
            log.warning("undecodable call event", extra={"subject": msg.subject})
            await msg.term()
            return
        span.set_attribute("trunkline.call_sid", event.call_sid)
        span.set_attribute("trunkline.call_event", kind_name(event.kind))
        try:
            await callback(event, context)
        except Exception as error:
            _receive_failed(span, error, "callback")
            log.exception(
                "call event handler failed; redelivering",
                extra={"subject": msg.subject, "call_sid": event.call_sid},
            )
            await msg.nak(delay=1)
            return
        await msg.ack()


def _receive_failed(span: trace.Span, error: Exception, reason: str) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    RECEIVE_FAILURES.labels(reason=reason).inc()
