"""Usage events: exactly one per answered lookup in the USAGE stream of a real nats-server,
and lookups that never wait for NATS (down at start, failing, or away so long that the
bounded queue drops events, which is logged)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from trunkline.cnam.lookup import CallerNames, NotNorthAmerican
from trunkline.cnam.provider import ProviderError
from trunkline.cnam.testing import stored_lookups, write_names
from trunkline.cnam.usage import Publisher, UsageRecorder
from trunkline.events.testing import NatsServer
from trunkline.events.usage import UsagePublisher
from trunkline.store import Repository
from trunkline.v1.cnam_pb2 import CnamLookup, LookupRequest

WAIT = 10.0


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


class Provider:
    def __init__(self) -> None:
        self.asked = 0

    async def lookup(self, number: str) -> str | None:
        self.asked += 1
        if number == "+13125550199":
            raise ProviderError("answered HTTP 503")
        return "SMITH JOHN" if number == "+12125550123" else None

    async def close(self) -> None:
        return None


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url, name="trunkline-test-billing")
    yield client
    await client.drain()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


async def settled(recorder: UsageRecorder, published: int) -> None:
    async with asyncio.timeout(WAIT):
        while recorder.published < published or recorder.pending:
            await asyncio.sleep(0.02)


async def test_every_answered_lookup_is_exactly_one_usage_event(
    store: Repository, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async def connect() -> Publisher:
        return await UsagePublisher.connect(nats_server.url, name="trunkline-test-cnam")

    recorder = UsageRecorder(connect)
    recorder.start()
    provider = Provider()
    names = CallerNames(store, provider=provider, record=recorder.record)
    await write_names(store, {"+14155550100": "ACME CORP"})
    account = sid("AC")
    asked = [
        ("+14155550100", "table", True),
        ("+12125550123", "provider", True),
        ("+12125550123", "cache", True),
        ("+16465550111", "provider", False),
        ("+16465550111", "cache", False),
        ("+13125550199", "provider", False),  # the provider failed: still a billed lookup
    ]
    calls = []
    for number, _, _ in asked:
        call_sid = sid("CA")
        calls.append(call_sid)
        await names.lookup(
            LookupRequest(
                account_sid=account, trunk_sid=sid("TK"), call_sid=call_sid, number=number
            )
        )
    with pytest.raises(NotNorthAmerican):
        await names.lookup(
            LookupRequest(
                account_sid=account, trunk_sid=sid("TK"), call_sid=sid("CA"), number="+4930555777"
            )
        )
    await settled(recorder, len(asked))
    await recorder.close()
    events = await stored_lookups(js, account)
    assert [(e.call_sid, e.number, e.source, e.found) for e in events] == [
        (call_sid, number, source, found)
        for call_sid, (number, source, found) in zip(calls, asked, strict=True)
    ]
    assert all(e.account_sid == account and e.HasField("time") for e in events)


async def test_a_retried_lookup_of_one_call_is_billed_once(
    store: Repository, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async def connect() -> Publisher:
        return await UsagePublisher.connect(nats_server.url, name="trunkline-test-cnam")

    recorder = UsageRecorder(connect)
    recorder.start()
    names = CallerNames(store, record=recorder.record)
    account = sid("AC")
    again = LookupRequest(
        account_sid=account, trunk_sid=sid("TK"), call_sid=sid("CA"), number="+14155550100"
    )
    await names.lookup(again)
    await names.lookup(again)  # signaling's retry after a lost answer
    await settled(recorder, 2)
    await recorder.close()
    assert [e.call_sid for e in await stored_lookups(js, account)] == [again.call_sid]


async def test_lookups_go_on_while_nats_is_down_and_their_events_follow(
    store: Repository, nats_server: NatsServer, js: JetStreamContext
) -> None:
    attempts = 0
    nats_up = asyncio.Event()

    async def connect() -> Publisher:
        nonlocal attempts
        attempts += 1
        if not nats_up.is_set():
            raise nats.errors.NoServersError()
        return await UsagePublisher.connect(nats_server.url, name="trunkline-test-cnam")

    recorder = UsageRecorder(connect)
    recorder.start()
    names = CallerNames(store, record=recorder.record)
    account = sid("AC")
    for _ in range(3):
        async with asyncio.timeout(0.5):  # answered without waiting for NATS
            reply = await names.lookup(
                LookupRequest(
                    account_sid=account,
                    trunk_sid=sid("TK"),
                    call_sid=sid("CA"),
                    number="+14155550100",
                )
            )
        assert reply.source == "table"
    await asyncio.sleep(0.5)
    assert attempts >= 2 and recorder.pending == 3
    nats_up.set()
    await settled(recorder, 3)
    await recorder.close()
    assert len(await stored_lookups(js, account)) == 3


def lookup_event(call_sid: str) -> CnamLookup:
    event = CnamLookup(
        account_sid=sid("AC"), trunk_sid=sid("TK"), call_sid=call_sid, number="+14155550100"
    )
    event.time.GetCurrentTime()
    return event


async def test_a_failed_publish_is_retried_until_confirmed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.failures = 2
            self.confirmed: list[str] = []

        async def publish_cnam(self, lookup: CnamLookup) -> object:
            if self.failures:
                self.failures -= 1
                raise TimeoutError("no ack")
            self.confirmed.append(lookup.call_sid)
            return None

        async def close(self) -> None:
            return None

    flaky = Flaky()

    async def connect() -> Publisher:
        return flaky

    recorder = UsageRecorder(connect)
    recorder.start()
    call_sid = sid("CA")
    with caplog.at_level(logging.WARNING, logger="trunkline.cnam.usage"):
        recorder.record(lookup_event(call_sid))
        await settled(recorder, 1)
    await recorder.close()
    assert flaky.confirmed == [call_sid]
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert retries[0].call_sids == [call_sid]  # type: ignore[attr-defined]


async def test_a_full_queue_drops_and_logs_and_shutdown_logs_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def connect() -> Publisher:
        await asyncio.Event().wait()  # NATS never answers
        raise AssertionError("unreachable")

    recorder = UsageRecorder(connect, max_queued=2)
    recorder.start()
    calls = [sid("CA") for _ in range(4)]
    with caplog.at_level(logging.ERROR, logger="trunkline.cnam.usage"):
        for call_sid in calls:
            recorder.record(lookup_event(call_sid))
            await asyncio.sleep(0)  # the drain task takes the first one in flight
        dropped = [r.call_sid for r in caplog.records]  # type: ignore[attr-defined]
        assert dropped == [calls[3]]
        assert "queue is full" in caplog.records[0].getMessage()
        caplog.clear()
        await recorder.close(timeout=0.1)
    unpublished = sorted(r.call_sid for r in caplog.records)  # type: ignore[attr-defined]
    assert unpublished == sorted(calls[:3])
    assert all("at shutdown" in r.getMessage() for r in caplog.records)
