"""ConfigPublisher and subscribe_config against a real nats-server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from trunkline.events.config import ConfigPublisher, subscribe_config
from trunkline.events.connection import flush
from trunkline.events.subjects import CONFIG_WILDCARD, config_subject
from trunkline.events.testing import NatsServer
from trunkline.v1.config_pb2 import ConfigChange

ACCOUNT = "AC" + "1" * 32
TRUNK = "TK" + "2" * 32
URL = "OU" + "3" * 32
DELIVERY_TIMEOUT = 5.0


@pytest.fixture
async def publisher(nats_server: NatsServer) -> AsyncIterator[ConfigPublisher]:
    publisher = await ConfigPublisher.connect(nats_server.url, name="trunkline-test-api")
    yield publisher
    await publisher.close()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url, name="trunkline-test-subscriber")
    yield client
    await client.drain()


def failures(resource: str) -> float:
    value = REGISTRY.get_sample_value(
        "trunkline_config_publish_failures_total", {"resource": resource}
    )
    return value or 0.0


def the_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


async def test_a_published_change_reaches_a_subscriber_with_its_trace(
    publisher: ConfigPublisher, nc: NATS, spans: InMemorySpanExporter
) -> None:
    received: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe(CONFIG_WILDCARD, cb=received.put)
    await flush(nc)
    before = time.time()

    await publisher.publish(ACCOUNT, "origination_urls", URL, "created", parent_sid=TRUNK)

    msg = await asyncio.wait_for(received.get(), DELIVERY_TIMEOUT)
    assert msg.subject == f"trunkline.config.{ACCOUNT}.origination_urls"
    change = ConfigChange.FromString(msg.data)
    assert (change.account_sid, change.resource, change.sid, change.action, change.parent_sid) == (
        ACCOUNT,
        "origination_urls",
        URL,
        "created",
        TRUNK,
    )
    assert before - 1 <= change.occurred_at.ToDatetime().timestamp() <= time.time() + 1

    span = the_span(spans, "config.publish")
    assert span.kind is SpanKind.PRODUCER
    assert span.context is not None
    assert msg.headers is not None
    _, trace_id, parent_id, _ = msg.headers["traceparent"].split("-")
    assert trace_id == f"{span.context.trace_id:032x}"
    assert parent_id == f"{span.context.span_id:016x}"
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == msg.subject


async def test_the_notice_continues_the_trace_of_the_api_request(
    publisher: ConfigPublisher, nc: NATS, spans: InMemorySpanExporter
) -> None:
    received: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe(config_subject(ACCOUNT, "trunks"), cb=received.put)
    await flush(nc)
    with trace.get_tracer("test").start_as_current_span("POST /v1/Trunks") as request:
        await publisher.publish(ACCOUNT, "trunks", TRUNK, "updated")
    msg = await asyncio.wait_for(received.get(), DELIVERY_TIMEOUT)
    assert msg.headers is not None
    assert msg.headers["traceparent"].split("-")[1] == f"{request.get_span_context().trace_id:032x}"


async def test_subscribe_config_decodes_and_hands_over_the_trace_context(
    publisher: ConfigPublisher, nc: NATS, spans: InMemorySpanExporter
) -> None:
    received: asyncio.Queue[tuple[ConfigChange, Context, trace.SpanContext]] = asyncio.Queue()

    async def on_change(change: ConfigChange, context: Context) -> None:
        current = trace.get_current_span().get_span_context()
        await received.put((change, context, current))

    await subscribe_config(nc, on_change)
    await publisher.publish(ACCOUNT, "trunks", TRUNK, "deleted")

    change, context, current = await asyncio.wait_for(received.get(), DELIVERY_TIMEOUT)
    assert (change.sid, change.action, change.parent_sid) == (TRUNK, "deleted", "")
    published = the_span(spans, "config.publish").context
    assert published is not None
    remote = trace.get_current_span(context).get_span_context()
    assert remote.is_remote
    assert (remote.trace_id, remote.span_id) == (published.trace_id, published.span_id)
    # The callback ran inside a CONSUMER span of the same trace.
    assert current.trace_id == published.trace_id
    assert current.span_id != published.span_id


async def test_subscribe_config_filters_by_subject(
    publisher: ConfigPublisher, nc: NATS, spans: InMemorySpanExporter
) -> None:
    received: asyncio.Queue[ConfigChange] = asyncio.Queue()

    async def on_change(change: ConfigChange, context: Context) -> None:
        await received.put(change)

    await subscribe_config(nc, on_change, subject="trunkline.config.*.phone_numbers")
    await publisher.publish(ACCOUNT, "trunks", TRUNK, "updated")
    await publisher.publish(ACCOUNT, "phone_numbers", "PN" + "4" * 32, "updated")
    change = await asyncio.wait_for(received.get(), DELIVERY_TIMEOUT)
    assert change.resource == "phone_numbers"
    assert received.empty()


async def test_a_failing_callback_or_a_bad_payload_does_not_end_the_subscription(
    publisher: ConfigPublisher, nc: NATS, spans: InMemorySpanExporter
) -> None:
    received: asyncio.Queue[ConfigChange] = asyncio.Queue()

    async def on_change(change: ConfigChange, context: Context) -> None:
        if change.sid == "boom":
            raise RuntimeError("cache bug")
        await received.put(change)

    await subscribe_config(nc, on_change)
    await nc.publish(config_subject(ACCOUNT, "trunks"), b"\xff\xff not protobuf")
    await publisher.publish(ACCOUNT, "trunks", "boom", "updated")
    await publisher.publish(ACCOUNT, "trunks", TRUNK, "updated")
    change = await asyncio.wait_for(received.get(), DELIVERY_TIMEOUT)
    assert change.sid == TRUNK
    decode = REGISTRY.get_sample_value(
        "trunkline_config_receive_failures_total", {"reason": "decode"}
    )
    callback = REGISTRY.get_sample_value(
        "trunkline_config_receive_failures_total", {"reason": "callback"}
    )
    assert decode is not None and decode >= 1
    assert callback is not None and callback >= 1


async def test_publish_never_raises_when_nats_is_gone(
    own_nats_server: NatsServer, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = await ConfigPublisher.connect(own_nats_server.url, name="trunkline-test-api")
    before = failures("credentials")
    own_nats_server.stop()
    caplog.set_level(logging.WARNING, logger="trunkline.events.config")

    started = time.monotonic()
    await publisher.publish(ACCOUNT, "credentials", "CR" + "5" * 32, "updated", "CL" + "6" * 32)
    assert time.monotonic() - started < 5, "a dead NATS must not hold up the API request"

    assert failures("credentials") == before + 1
    [record] = [r for r in caplog.records if r.message == "configuration change not announced"]
    assert record.__dict__["sid"] == "CR" + "5" * 32
    assert record.__dict__["parent_sid"] == "CL" + "6" * 32
    assert the_span(spans, "config.publish").status.status_code is StatusCode.ERROR
    await publisher.close()


async def test_publish_after_close_is_counted_not_raised(
    nats_server: NatsServer, spans: InMemorySpanExporter
) -> None:
    publisher = await ConfigPublisher.connect(nats_server.url, name="trunkline-test-api")
    await publisher.close()
    before = failures("trunks")
    await publisher.publish(ACCOUNT, "trunks", TRUNK, "updated")
    assert failures("trunks") == before + 1


async def test_a_bad_action_or_token_is_counted_not_raised(
    publisher: ConfigPublisher, spans: InMemorySpanExporter
) -> None:
    before = failures("trunks")
    await publisher.publish(ACCOUNT, "trunks", TRUNK, "renamed")
    await publisher.publish("AC.1", "trunks", TRUNK, "updated")
    assert failures("trunks") == before + 2
