"""UsagePublisher and ensure_usage_stream against a real nats-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from trunkline.events.testing import NatsServer
from trunkline.events.usage import (
    USAGE_STREAM,
    USAGE_WILDCARD,
    UsageEventNotPublished,
    UsagePublisher,
    cnam_message_id,
    ensure_usage_stream,
    usage_subject,
)
from trunkline.v1.cnam_pb2 import CnamLookup


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def lookup(account: str, call: str | None = None) -> CnamLookup:
    event = CnamLookup(
        account_sid=account,
        trunk_sid=new_sid("TK"),
        call_sid=call or new_sid("CA"),
        number="+14155550100",
        found=True,
        source="table",
    )
    event.time.GetCurrentTime()
    return event


@pytest.fixture
async def publisher(nats_server: NatsServer) -> AsyncIterator[UsagePublisher]:
    publisher = await UsagePublisher.connect(nats_server.url, name="trunkline-test-cnam")
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


async def stored(js: JetStreamContext, account: str) -> list[tuple[str, CnamLookup]]:
    psub = await js.pull_subscribe(usage_subject(account, "cnam"), stream=USAGE_STREAM)
    found: list[tuple[str, CnamLookup]] = []
    try:
        while True:
            try:
                messages = await psub.fetch(100, timeout=0.5)
            except TimeoutError:  # nats-py's, or asyncio's between its two pull requests
                return found
            for message in messages:
                found.append((message.subject, CnamLookup.FromString(message.data)))
                await message.ack()
    finally:
        await psub.unsubscribe()


def test_subjects_name_the_account_and_the_kind() -> None:
    assert usage_subject("AC1", "cnam") == "trunkline.usage.AC1.cnam"
    with pytest.raises(ValueError, match="usage kind"):
        usage_subject("AC1", "minutes")
    with pytest.raises(ValueError, match="account_sid"):
        usage_subject("AC.1", "cnam")


async def test_the_stream_keeps_usage_on_file_for_a_week(
    publisher: UsagePublisher, js: JetStreamContext
) -> None:
    info = await js.stream_info(USAGE_STREAM)
    assert info.config.subjects == [USAGE_WILDCARD] == ["trunkline.usage.>"]
    assert info.config.storage == StorageType.FILE
    assert info.config.retention == RetentionPolicy.LIMITS
    assert info.config.max_age == 7 * 24 * 3600
    assert info.config.duplicate_window == 120


async def test_ensure_usage_stream_updates_and_keeps_what_is_stored(
    publisher: UsagePublisher, js: JetStreamContext
) -> None:
    await publisher.publish_cnam(lookup(new_sid("AC")))
    before = (await js.stream_info(USAGE_STREAM)).state.messages
    try:
        info = await ensure_usage_stream(js, max_age=timedelta(days=30))
        assert info.config.max_age == 30 * 24 * 3600
        assert info.state.messages == before
    finally:
        await ensure_usage_stream(js)


async def test_a_lookup_is_stored_once_under_its_account(
    publisher: UsagePublisher, js: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    account = new_sid("AC")
    event = lookup(account)
    first = await publisher.publish_cnam(event)
    again = await publisher.publish_cnam(event)  # a retry after a lost acknowledgement
    assert (first.stream, bool(first.duplicate), again.duplicate) == (USAGE_STREAM, False, True)
    assert await stored(js, account) == [(f"trunkline.usage.{account}.cnam", event)]
    assert cnam_message_id(event) == f"cnam.{event.call_sid}.+14155550100"
    [span] = [s for s in spans.get_finished_spans() if s.name == "usage.publish"][-1:]
    assert span.kind == SpanKind.PRODUCER
    assert span.attributes is not None
    assert span.attributes["trunkline.call_sid"] == event.call_sid


async def test_an_incomplete_lookup_is_refused(publisher: UsagePublisher) -> None:
    timeless = CnamLookup(account_sid=new_sid("AC"), call_sid=new_sid("CA"), number="+1")
    with pytest.raises(ValueError, match="time"):
        await publisher.publish_cnam(timeless)
    nameless = lookup(new_sid("AC"))
    nameless.call_sid = ""
    with pytest.raises(ValueError, match="call_sid"):
        await publisher.publish_cnam(nameless)


async def test_an_unconfirmed_publish_raises(own_nats_server: NatsServer) -> None:
    publisher = await UsagePublisher.connect(
        own_nats_server.url, name="trunkline-test-cnam", ack_timeout=0.5
    )
    try:
        own_nats_server.stop()
        with pytest.raises(UsageEventNotPublished):
            await publisher.publish_cnam(lookup(new_sid("AC")))
    finally:
        await publisher.close()
