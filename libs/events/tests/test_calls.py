"""CallEventPublisher, ensure_calls_stream and subscribe_calls against a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from trunkline.events.calls import (
    DEFAULT_MAX_AGE,
    CallEventNotPublished,
    CallEventPublisher,
    ensure_calls_stream,
    subscribe_calls,
)
from trunkline.events.connection import flush
from trunkline.events.subjects import CALLS_STREAM, CALLS_WILDCARD, call_subject
from trunkline.events.testing import NatsServer
from trunkline.v1.calls_pb2 import CallEvent

DELIVERY_TIMEOUT = 5.0
T0 = datetime(2026, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)
Received = tuple[CallEvent, Context, trace.SpanContext]


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def lifecycle(account: str, call: str) -> list[CallEvent]:
    """What signaling publishes for an answered termination call that lasted 42 s."""
    common: dict[str, Any] = {
        "call_sid": call,
        "account_sid": account,
        "trunk_sid": "TK" + "2" * 32,
        "direction": "trunking-terminating",
        "from": "+14155550100",
        "to": "+15108675309",
        "edge": "ashburn",
        "sip_call_id": "a84b4c76e66710@pbx.example.com",
    }
    started = CallEvent(kind=CallEvent.STARTED, status="queued", **common)
    ringing = CallEvent(kind=CallEvent.RINGING, status="ringing", sip_status=180, **common)
    answered = CallEvent(kind=CallEvent.ANSWERED, status="in-progress", sip_status=200, **common)
    ended = CallEvent(
        kind=CallEvent.ENDED,
        status="completed",
        sip_status=200,
        ended_by="caller",
        reason="BYE",
        duration_seconds=42,
        **common,
    )
    events = [started, ringing, answered, ended]
    for offset, event in zip((0, 2, 5, 47), events, strict=True):
        event.time.FromDatetime(T0 + timedelta(seconds=offset))
    answered.answer_time.CopyFrom(answered.time)
    ended.answer_time.CopyFrom(answered.time)
    return events


@pytest.fixture
async def publisher(nats_server: NatsServer) -> AsyncIterator[CallEventPublisher]:
    publisher = await CallEventPublisher.connect(nats_server.url, name="trunkline-test-signaling")
    yield publisher
    await publisher.close()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url, name="trunkline-test-billing")
    yield client
    await client.drain()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


class Collector:
    """A subscribe_calls callback that queues what it gets, with the span it ran in."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Received] = asyncio.Queue()

    async def __call__(self, event: CallEvent, context: Context) -> None:
        await self.queue.put((event, context, trace.get_current_span().get_span_context()))

    async def take(self, n: int) -> list[CallEvent]:
        got = [await asyncio.wait_for(self.queue.get(), DELIVERY_TIMEOUT) for _ in range(n)]
        return [event for event, _, _ in got]

    async def nothing_more(self, wait: float = 0.5) -> None:
        await asyncio.sleep(wait)
        assert self.queue.empty(), "more events than were published"


def account_filter(account: str) -> str:
    return f"trunkline.calls.{account}.>"


async def test_the_stream_keeps_events_on_file_for_a_week(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    info = await js.stream_info(CALLS_STREAM)
    assert info.config.subjects == [CALLS_WILDCARD]
    assert info.config.storage == StorageType.FILE
    assert info.config.retention == RetentionPolicy.LIMITS
    assert info.config.max_age == DEFAULT_MAX_AGE.total_seconds() == 7 * 24 * 3600
    assert info.config.duplicate_window == 120


async def test_ensure_calls_stream_updates_and_keeps_what_is_stored(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    await publisher.publish(lifecycle(account, call)[0])
    before = (await js.stream_info(CALLS_STREAM)).state.messages
    try:
        info = await ensure_calls_stream(js, max_age=timedelta(days=30))
        assert info.config.max_age == 30 * 24 * 3600
        assert info.state.messages == before
    finally:
        await ensure_calls_stream(js)
    assert (await js.stream_info(CALLS_STREAM)).config.max_age == 7 * 24 * 3600


async def test_a_call_lifecycle_is_read_back_in_order_through_a_durable_consumer(
    publisher: CallEventPublisher, js: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    sent = lifecycle(account, call)
    acks = [await publisher.publish(event) for event in sent]
    assert [ack.stream for ack in acks] == [CALLS_STREAM] * 4
    assert [ack.seq for ack in acks] == sorted(ack.seq for ack in acks)

    collector = Collector()
    subscription = await subscribe_calls(
        js, collector, durable=f"billing-{account}", subject=account_filter(account)
    )
    try:
        got = await collector.take(4)
    finally:
        await subscription.stop()
    assert got == sent
    assert [CallEvent.Kind.Name(e.kind) for e in got] == ["STARTED", "RINGING", "ANSWERED", "ENDED"]
    ended = got[-1]
    assert (ended.sip_status, ended.duration_seconds, ended.status) == (200, 42, "completed")
    assert ended.answer_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=5)
    assert getattr(ended, "from") == "+14155550100"


async def test_subjects_name_account_call_and_kind(publisher: CallEventPublisher, nc: NATS) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    received: asyncio.Queue[str] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await received.put(msg.subject)

    await nc.subscribe(account_filter(account), cb=on_msg)
    await flush(nc)
    for event in lifecycle(account, call):
        await publisher.publish(event)
    subjects = [await asyncio.wait_for(received.get(), DELIVERY_TIMEOUT) for _ in range(4)]
    assert subjects == [
        f"trunkline.calls.{account}.{call}.{kind}"
        for kind in ("started", "ringing", "answered", "ended")
    ]


async def test_a_durable_consumer_resumes_after_what_it_acknowledged(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    account = new_sid("AC")
    first, second = lifecycle(account, new_sid("CA")), lifecycle(account, new_sid("CA"))
    for event in first:
        await publisher.publish(event)
    collector = Collector()
    durable = f"billing-{account}"
    subscription = await subscribe_calls(
        js, collector, durable=durable, subject=account_filter(account)
    )
    assert await collector.take(4) == first
    await subscription.stop()

    for event in second:  # published while the consumer is away
        await publisher.publish(event)
    again = Collector()
    subscription = await subscribe_calls(
        js, again, durable=durable, subject=account_filter(account)
    )
    try:
        assert await again.take(4) == second
        await again.nothing_more()
    finally:
        await subscription.stop()


async def test_the_stream_survives_a_publisher_reconnect_and_a_server_restart(
    own_nats_server: NatsServer,
) -> None:
    account = new_sid("AC")
    calls = [lifecycle(account, new_sid("CA")) for _ in range(3)]
    publisher = await CallEventPublisher.connect(own_nats_server.url, name="signaling-1")
    for event in calls[0]:
        await publisher.publish(event)
    await publisher.close()

    publisher = await CallEventPublisher.connect(own_nats_server.url, name="signaling-2")
    for event in calls[1]:
        await publisher.publish(event)
    await publisher.close()

    # The events are on disk: a new server process on the same store still has them.
    own_nats_server.stop()
    with NatsServer(own_nats_server.workdir) as restarted:
        publisher = await CallEventPublisher.connect(restarted.url, name="signaling-3")
        for event in calls[2]:
            await publisher.publish(event)
        await publisher.close()

        nc = await nats.connect(restarted.url)
        collector = Collector()
        subscription = await subscribe_calls(
            nc.jetstream(), collector, durable="billing", subject=account_filter(account)
        )
        try:
            assert await collector.take(12) == [e for call in calls for e in call]
        finally:
            await subscription.stop()
            await nc.drain()


async def test_the_trace_context_travels_from_publisher_to_consumer(
    publisher: CallEventPublisher, js: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    started = lifecycle(account, call)[0]
    with trace.get_tracer("test").start_as_current_span("INVITE") as invite:
        await publisher.publish(started)

    collector = Collector()
    subscription = await subscribe_calls(
        js, collector, durable=f"billing-{account}", subject=account_filter(account)
    )
    try:
        event, context, current = await asyncio.wait_for(collector.queue.get(), DELIVERY_TIMEOUT)
    finally:
        await subscription.stop()
    assert event == started
    [published] = [s for s in spans.get_finished_spans() if s.name == "calls.publish"]
    assert published.kind is SpanKind.PRODUCER and published.context is not None
    assert published.context.trace_id == invite.get_span_context().trace_id
    assert published.attributes is not None
    assert published.attributes["messaging.destination.name"] == call_subject(
        account, call, "started"
    )
    remote = trace.get_current_span(context).get_span_context()
    assert remote.is_remote
    assert (remote.trace_id, remote.span_id) == (
        published.context.trace_id,
        published.context.span_id,
    )
    # The callback ran in a CONSUMER span of the same trace.
    assert current.trace_id == published.context.trace_id
    assert current.span_id != published.context.span_id
    [processed] = [s for s in spans.get_finished_spans() if s.name == "calls.process"]
    assert processed.kind is SpanKind.CONSUMER


async def test_an_event_published_outside_any_trace_starts_no_trace_of_its_own(
    publisher: CallEventPublisher, js: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    started = lifecycle(account, call)[0]
    ack = await publisher.publish(started)
    assert ack.stream == "CALLS"
    assert not [s for s in spans.get_finished_spans() if s.name == "calls.publish"]
    collector = Collector()
    subscription = await subscribe_calls(
        js, collector, durable=f"billing-{account}", subject=account_filter(account)
    )
    try:
        event, context, _ = await asyncio.wait_for(collector.queue.get(), DELIVERY_TIMEOUT)
    finally:
        await subscription.stop()
    assert event == started
    assert not trace.get_current_span(context).get_span_context().is_valid


async def test_publishing_the_same_event_again_stores_it_once(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    started, ringing = lifecycle(account, call)[:2]
    first = await publisher.publish(started)
    retry = await publisher.publish(started)  # as after an acknowledgement lost on the way
    assert not first.duplicate and retry.duplicate and retry.seq == first.seq
    await publisher.publish(ringing)
    collector = Collector()
    subscription = await subscribe_calls(
        js, collector, durable=f"billing-{account}", subject=account_filter(account)
    )
    try:
        assert await collector.take(2) == [started, ringing]
        await collector.nothing_more()
    finally:
        await subscription.stop()


async def test_a_failing_handler_gets_the_event_again_and_garbage_is_dropped(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    started, ringing = lifecycle(account, call)[:2]
    await js.publish(call_subject(account, call, "started"), b"\xff\xff not protobuf")
    await publisher.publish(started)
    await publisher.publish(ringing)
    got: asyncio.Queue[CallEvent] = asyncio.Queue()
    failed_once = False

    async def flaky(event: CallEvent, context: Context) -> None:
        nonlocal failed_once
        if event.kind == CallEvent.STARTED and not failed_once:
            failed_once = True
            raise RuntimeError("billing database is down")
        await got.put(event)

    subscription = await subscribe_calls(
        js, flaky, durable=f"billing-{account}", subject=account_filter(account)
    )
    try:
        delivered = {
            CallEvent.Kind.Name((await asyncio.wait_for(got.get(), DELIVERY_TIMEOUT)).kind)
            for _ in range(2)
        }
    finally:
        await subscription.stop()
    assert failed_once and delivered == {"STARTED", "RINGING"}
    for reason in ("decode", "callback"):
        value = REGISTRY.get_sample_value(
            "trunkline_call_events_receive_failures_total", {"reason": reason}
        )
        assert value is not None and value >= 1


async def test_a_fetch_that_times_out_with_asyncios_error_does_not_stop_the_subscriber(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    # nats-py raises asyncio.TimeoutError, not its own, when a poll's deadline passes
    # between its two pull requests (seen in CI); the subscriber must poll on.
    account, call = new_sid("AC"), new_sid("CA")
    collector = Collector()
    subscription = await subscribe_calls(
        js, collector, durable=f"billing-{account}", subject=account_filter(account)
    )
    psub = subscription.subscription
    real_fetch = psub.fetch
    raised = 0

    async def fetch(*args: Any, **kwargs: Any) -> list[Msg]:
        nonlocal raised
        if raised < 2:
            raised += 1
            raise TimeoutError  # asyncio.TimeoutError is this builtin since 3.11
        return await real_fetch(*args, **kwargs)

    psub.fetch = fetch  # type: ignore[method-assign]
    try:
        await asyncio.sleep(0)  # the loop's next polls go through the patched fetch
        started = lifecycle(account, call)[0]
        await publisher.publish(started)
        assert await collector.take(1) == [started]
        assert raised == 2
    finally:
        await subscription.stop()


async def test_an_event_that_cannot_be_published_is_refused_before_sending(
    publisher: CallEventPublisher,
) -> None:
    account, call = new_sid("AC"), new_sid("CA")
    started = lifecycle(account, call)[0]
    without_kind = CallEvent()
    without_kind.CopyFrom(started)
    without_kind.kind = CallEvent.KIND_UNSPECIFIED
    without_time = CallEvent()
    without_time.CopyFrom(started)
    without_time.ClearField("time")
    bad_account = CallEvent()
    bad_account.CopyFrom(started)
    bad_account.account_sid = "AC.1"
    for event, message in (
        (without_kind, "kind"),
        (without_time, "time"),
        (bad_account, "account_sid"),
    ):
        with pytest.raises(ValueError, match=message):
            await publisher.publish(event)
        with pytest.raises(ValueError, match=message):  # and nothing of the batch is sent
            await publisher.publish_many([lifecycle(account, call)[1], event])
    held = HeldAcks(expected=99)
    publisher._js = held  # type: ignore[assignment]
    with pytest.raises(ValueError, match="account_sid"):
        await publisher.publish_many([started, bad_account])
    assert held.sent == []


async def test_publish_raises_when_jetstream_does_not_confirm(
    own_nats_server: NatsServer, spans: InMemorySpanExporter
) -> None:
    publisher = await CallEventPublisher.connect(
        own_nats_server.url, name="trunkline-test-signaling", ack_timeout=0.5
    )
    before = REGISTRY.get_sample_value(
        "trunkline_call_events_publish_failures_total", {"kind": "ended"}
    )
    own_nats_server.stop()
    ended = lifecycle(new_sid("AC"), new_sid("CA"))[-1]
    started = time.monotonic()
    with pytest.raises(CallEventNotPublished):
        await publisher.publish(ended)
    assert time.monotonic() - started < 5
    after = REGISTRY.get_sample_value(
        "trunkline_call_events_publish_failures_total", {"kind": "ended"}
    )
    assert (after or 0) == (before or 0) + 1
    await publisher.close()


async def test_publish_many_stores_a_batch_in_order_and_a_retried_batch_once(
    publisher: CallEventPublisher, js: JetStreamContext
) -> None:
    account = new_sid("AC")
    events = [e for call in (new_sid("CA"), new_sid("CA")) for e in lifecycle(account, call)]
    before = (await js.stream_info(CALLS_STREAM)).state.messages
    await publisher.publish_many(events, chunk=3)
    await publisher.publish_many(events[2:5])  # a retry after a lost acknowledgement
    assert (await js.stream_info(CALLS_STREAM)).state.messages == before + len(events)
    collector = Collector()
    subscription = await subscribe_calls(
        js, collector, durable=f"billing-{account}", subject=account_filter(account)
    )
    try:
        assert await collector.take(len(events)) == events
        await collector.nothing_more()
    finally:
        await subscription.stop()


class HeldAcks:
    """A JetStream context whose acks all wait until `expected` messages were sent (as
    acks come back late from a busy loop); `fail` makes the ack of that message an error."""

    def __init__(self, expected: int, fail: int | None = None) -> None:
        self.expected = expected
        self.fail = fail
        self.sent: list[str] = []
        self.acks: list[asyncio.Future[Any]] = []

    async def publish_async(self, subject: str, payload: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(subject)
        self.acks.append(asyncio.get_running_loop().create_future())
        if len(self.sent) == self.expected:
            for index, ack in enumerate(self.acks):
                if index == self.fail:
                    ack.set_exception(RuntimeError("stream full"))
                else:
                    ack.set_result(SimpleNamespace(seq=index + 1, duplicate=False))
        return self.acks[-1]


async def test_publish_many_sends_every_event_before_awaiting_any_ack(nc: NATS) -> None:
    # Awaiting acks as it sends (per event, or per chunk) would wait here forever.
    publisher = CallEventPublisher(nc, ack_timeout=2.0)
    held = HeldAcks(expected=8)
    publisher._js = held  # type: ignore[assignment]
    events = lifecycle(new_sid("AC"), new_sid("CA")) + lifecycle(new_sid("AC"), new_sid("CA"))
    await asyncio.wait_for(publisher.publish_many(events, chunk=3), 5)
    assert held.sent == [
        call_subject(e.account_sid, e.call_sid, CallEvent.Kind.Name(e.kind).lower()) for e in events
    ]


async def test_publish_many_raises_when_an_event_is_not_confirmed(nc: NATS) -> None:
    publisher = CallEventPublisher(nc, ack_timeout=2.0)
    publisher._js = HeldAcks(expected=4, fail=2)  # type: ignore[assignment]
    before = REGISTRY.get_sample_value(
        "trunkline_call_events_publish_failures_total", {"kind": "answered"}
    )
    with pytest.raises(CallEventNotPublished, match="1 of 4"):
        await publisher.publish_many(lifecycle(new_sid("AC"), new_sid("CA")))
    after = REGISTRY.get_sample_value(
        "trunkline_call_events_publish_failures_total", {"kind": "answered"}
    )
    assert (after or 0) == (before or 0) + 1
