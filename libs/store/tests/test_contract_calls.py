"""Call records (CDRs) on every backend: the fields signaling writes and the API reads back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from trunkline.domain.model import Call, CallDirection, CallStatus
from trunkline.store import Batch, Cursor, Repository, open_store

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ACCOUNT = "AC" + "a" * 32
TRUNK = "TK" + "b" * 32
# Past every real (created_us, key): the start of a newest-first read.
NEWEST = Cursor(2**62, "")


@pytest.fixture
async def repo(store_url: str) -> AsyncIterator[Repository]:
    store = open_store(store_url)
    try:
        yield store
    finally:
        await store.close()


def call(n: int) -> Call:
    return Call(
        sid=f"CA{n:032x}",
        account_sid=ACCOUNT,
        trunk_sid=TRUNK,
        direction=CallDirection.TRUNKING_ORIGINATING,
        from_="+14155550100",
        to="+15108675309",
        start_time=T0 + timedelta(seconds=n),
        date_created=T0 + timedelta(seconds=n),
        date_updated=T0 + timedelta(seconds=n),
    )


async def test_a_call_keeps_every_field_through_its_life(repo: Repository) -> None:
    queued = call(1)
    await repo.apply(Batch().put(queued))
    assert await repo.get(Call, queued.sid) == queued
    ended = replace(
        queued,
        status=CallStatus.COMPLETED,
        answer_time=T0 + timedelta(seconds=3),
        end_time=T0 + timedelta(seconds=63),
        duration=60,
        sip_response_code=200,
        caller_name="ACME CORP",
        forwarded_from="+14155550199",
        phone_number_sid="PN" + "c" * 32,
        edge="frankfurt",
        sip_call_id="3848276298220188511@carrier.example",
        date_updated=T0 + timedelta(seconds=63),
    )
    await repo.apply(Batch().put(ended))
    assert await repo.get(Call, queued.sid) == ended
    # An update keeps the call where it was listed: date_created does not change.
    assert await repo.list(Call, "account", ACCOUNT, limit=5) == [ended]
    assert await repo.list(Call, "trunk", TRUNK, limit=5) == [ended]


async def test_calls_read_newest_first_from_the_end_of_the_partition(repo: Repository) -> None:
    calls = [call(n) for n in range(5)]
    batch = Batch()
    for c in calls:
        batch.put(c)
    await repo.apply(batch)
    newest = await repo.list(Call, "account", ACCOUNT, limit=2, before=NEWEST)
    assert [c.sid for c in newest] == [c.sid for c in calls[3:]]
    older = await repo.list(Call, "account", ACCOUNT, limit=2, before=Cursor.of(newest[0]))
    assert [c.sid for c in older] == [c.sid for c in calls[1:3]]


async def test_a_large_batch_with_repeats_keeps_the_last_put_of_each_record(
    repo: Repository,
) -> None:
    # More records than one multi-row statement holds, some of them put twice (the second
    # put moves the call to another trunk: its index rows must move too), one deleted and
    # put again in the same batch (put wins, as deletes apply first).
    calls = [call(n) for n in range(450)]
    await repo.apply(Batch().put(calls[7]))
    batch = Batch()
    for record in calls:
        batch.put(record)
    moved = [replace(record, trunk_sid="TK" + "d" * 32) for record in calls[:10]]
    for record in moved:
        batch.put(record)
    batch.delete(calls[7])
    await repo.apply(batch)
    assert await repo.count(Call, "account", ACCOUNT, limit=1000) == 450
    assert await repo.count(Call, "trunk", TRUNK, limit=1000) == 440
    assert await repo.count(Call, "trunk", "TK" + "d" * 32, limit=1000) == 10
    assert await repo.get(Call, calls[3].sid) == moved[3]
    assert await repo.get(Call, calls[300].sid) == calls[300]
