"""The contract every store backend passes: each test runs on SQLite and on Cassandra."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from trunkline.domain.model import InventoryNumber, PhoneNumber, Trunk
from trunkline.store import Batch, ClaimConflict, Cursor, Repository, open_store

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
async def repo(store_url: str) -> AsyncIterator[Repository]:
    store = open_store(store_url)
    try:
        yield store
    finally:
        await store.close()


def trunk(n: int, account: str = "AC" + "a" * 32, **kw: object) -> Trunk:
    return Trunk(
        sid=f"TK{n:032x}",
        account_sid=account,
        date_created=T0 + timedelta(seconds=n // 2),  # pairs share a timestamp: key breaks ties
        **kw,  # type: ignore[arg-type]
    )


async def test_get_missing_is_none(repo: Repository) -> None:
    assert await repo.get(Trunk, "TK" + "0" * 32) is None


async def test_round_trip_keeps_every_field(repo: Repository) -> None:
    number = InventoryNumber(
        phone_number="+14155550100",
        iso_country="US",
        locality="San Francisco",
        capabilities=frozenset({"voice", "fax"}),
        date_created=T0,
        date_updated=T0,
    )
    t = trunk(1, friendly_name="x", domain_name="a.pstn.z", secure=True)
    await repo.apply(Batch().put(number).put(t))
    assert await repo.get(InventoryNumber, "+14155550100") == number
    assert await repo.get(Trunk, t.sid) == t


async def test_list_orders_by_creation_then_key_and_pages_both_ways(repo: Repository) -> None:
    trunks = [trunk(n) for n in range(9)]
    batch = Batch()
    for t in reversed(trunks):
        batch.put(t)
    await repo.apply(batch)
    everything = await repo.list(Trunk, "account", trunks[0].account_sid, limit=100)
    assert [t.sid for t in everything] == [t.sid for t in trunks]
    page = await repo.list(
        Trunk, "account", trunks[0].account_sid, limit=4, after=Cursor.of(trunks[2])
    )
    assert [t.sid for t in page] == [t.sid for t in trunks[3:7]]
    back = await repo.list(
        Trunk, "account", trunks[0].account_sid, limit=4, before=Cursor.of(trunks[7])
    )
    assert [t.sid for t in back] == [t.sid for t in trunks[3:7]]
    assert await repo.list(Trunk, "account", "AC" + "b" * 32, limit=10) == []
    assert await repo.count(Trunk, "account", trunks[0].account_sid, limit=100) == 9
    assert await repo.count(Trunk, "account", trunks[0].account_sid, limit=4) == 4


async def test_changing_an_index_value_moves_the_record(repo: Repository) -> None:
    number = PhoneNumber(
        sid="PN" + "1" * 32,
        account_sid="AC" + "a" * 32,
        phone_number="+14155550101",
        friendly_name="n",
        iso_country="US",
        trunk_sid="TK" + "1" * 32,
    )
    await repo.apply(Batch().put(number))
    assert await repo.list(PhoneNumber, "trunk", "TK" + "1" * 32, limit=5) == [number]
    untied = replace(number, trunk_sid=None)
    await repo.apply(Batch().put(untied))
    assert await repo.list(PhoneNumber, "trunk", "TK" + "1" * 32, limit=5) == []
    assert await repo.list(PhoneNumber, "account", number.account_sid, limit=5) == [untied]


async def test_delete_removes_record_and_index_entries(repo: Repository) -> None:
    t = trunk(3)
    await repo.apply(Batch().put(t))
    await repo.apply(Batch().delete(t))
    assert await repo.get(Trunk, t.sid) is None
    assert await repo.list(Trunk, "account", t.account_sid, limit=5) == []


async def test_claim_conflict_writes_nothing_of_the_batch(repo: Repository) -> None:
    first, second = trunk(1), trunk(2)
    await repo.apply(Batch().put(first).claim("trunk_domain", "a.pstn.z", first.sid))
    assert await repo.holder("trunk_domain", "a.pstn.z") == first.sid
    with pytest.raises(ClaimConflict) as err:
        await repo.apply(
            Batch()
            .put(second)
            .claim("other", "free", second.sid)
            .claim("trunk_domain", "a.pstn.z", second.sid)
        )
    assert err.value.holder == first.sid
    assert await repo.get(Trunk, second.sid) is None
    assert await repo.holder("other", "free") is None


async def test_reclaim_by_same_owner_and_release(repo: Repository) -> None:
    t = trunk(1)
    await repo.apply(Batch().claim("trunk_domain", "b.pstn.z", t.sid))
    await repo.apply(Batch().claim("trunk_domain", "b.pstn.z", t.sid))  # idempotent
    await repo.apply(Batch().release("trunk_domain", "b.pstn.z", "TK" + "9" * 32))
    assert await repo.holder("trunk_domain", "b.pstn.z") == t.sid  # only the owner releases
    await repo.apply(Batch().release("trunk_domain", "b.pstn.z", t.sid))
    assert await repo.holder("trunk_domain", "b.pstn.z") is None


async def test_data_survives_reopening(store_url: str) -> None:
    url = store_url
    stored = trunk(5)
    store = open_store(url)
    await store.apply(Batch().put(stored))
    await store.close()
    again = open_store(url)
    try:
        assert await again.get(Trunk, stored.sid) == stored
    finally:
        await again.close()


async def test_putting_a_record_again_keeps_it_listed_once(repo: Repository) -> None:
    t = trunk(4, friendly_name="before")
    await repo.apply(Batch().put(t))
    renamed = replace(t, friendly_name="after")  # same indexes, same creation time
    await repo.apply(Batch().put(renamed))
    assert await repo.list(Trunk, "account", t.account_sid, limit=5) == [renamed]
    assert await repo.count(Trunk, "account", t.account_sid, limit=5) == 1


async def test_delete_and_put_of_one_record_in_a_batch_keeps_the_put(repo: Repository) -> None:
    t = trunk(6, friendly_name="old")
    await repo.apply(Batch().put(t))
    again = replace(t, friendly_name="new")
    await repo.apply(Batch().put(again).delete(t))  # deletes apply before puts
    assert await repo.get(Trunk, t.sid) == again
    assert await repo.list(Trunk, "account", t.account_sid, limit=5) == [again]


async def test_list_between_two_cursors_is_ascending(repo: Repository) -> None:
    trunks = [trunk(n) for n in range(6)]
    batch = Batch()
    for t in trunks:
        batch.put(t)
    await repo.apply(batch)
    page = await repo.list(
        Trunk,
        "account",
        trunks[0].account_sid,
        limit=10,
        after=Cursor.of(trunks[0]),
        before=Cursor.of(trunks[5]),
    )
    assert [t.sid for t in page] == [t.sid for t in trunks[1:5]]


async def test_a_large_batch_writes_every_record(repo: Repository) -> None:
    # Far more than one Cassandra batch may carry (50 KiB): a CSV import of the inventory.
    numbers = [
        InventoryNumber(
            phone_number=f"+1415555{n:04d}",
            iso_country="US",
            locality="San Francisco",
            date_created=T0 + timedelta(microseconds=n),
        )
        for n in range(400)
    ]
    batch = Batch()
    for number in numbers:
        batch.put(number)
    await repo.apply(batch)
    listed = await repo.list(InventoryNumber, "available_area", "US:local:415", limit=500)
    assert listed == numbers
    assert await repo.count(InventoryNumber, "country", "US", limit=1000) == 400


async def test_a_zero_limit_reads_nothing(repo: Repository) -> None:
    t = trunk(1)
    await repo.apply(Batch().put(t))
    assert await repo.list(Trunk, "account", t.account_sid, limit=0) == []
    assert await repo.count(Trunk, "account", t.account_sid, limit=0) == 0
