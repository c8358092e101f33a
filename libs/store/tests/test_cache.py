"""ConfigCache over a real SQLite store: hits, negative answers, TTL, LRU bound, coalesced
misses, paging, invalidation, and invalidation by notices from a real nats-server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trunkline.domain import claims
from trunkline.domain.model import Trunk
from trunkline.events.config import ConfigPublisher
from trunkline.events.testing import NatsServer
from trunkline.store import Batch, Cursor, Repository, open_store
from trunkline.store.cache import DEFAULT_TTL, ConfigCache, ttl_from_env
from trunkline.store.repository import R

ACCOUNT = "AC" + "a" * 32
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def trunk(n: int, **kw: object) -> Trunk:
    return Trunk(
        sid=f"TK{n:032x}",
        account_sid=ACCOUNT,
        date_created=T0 + timedelta(seconds=n),
        **kw,  # type: ignore[arg-type]
    )


class Counting:
    """A repository that counts the reads reaching the store, and can hold them at a gate."""

    def __init__(self, inner: Repository) -> None:
        self.inner = inner
        self.reads: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def _enter(self, what: str) -> None:
        self.reads[what] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail

    async def get(self, kind: type[R], key: str) -> R | None:
        await self._enter("get")
        return await self.inner.get(kind, key)

    async def list(
        self,
        kind: type[R],
        index: str,
        value: str,
        *,
        limit: int,
        after: Cursor | None = None,
        before: Cursor | None = None,
    ) -> Sequence[R]:
        await self._enter("list")
        return await self.inner.list(kind, index, value, limit=limit, after=after, before=before)

    async def count(self, kind: type[R], index: str, value: str, *, limit: int) -> int:
        return await self.inner.count(kind, index, value, limit=limit)

    async def holder(self, namespace: str, value: str) -> str | None:
        await self._enter("holder")
        return await self.inner.holder(namespace, value)

    async def apply(self, batch: Batch) -> None:
        await self.inner.apply(batch)

    async def close(self) -> None:
        await self.inner.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Counting]:
    repository = Counting(open_store(f"sqlite:///{tmp_path / 'cache.db'}"))
    yield repository
    await repository.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(store: Counting, clock: Clock) -> ConfigCache:
    return ConfigCache(store, ttl=30.0, clock=clock)


async def test_a_record_is_read_from_the_store_once(store: Counting, cache: ConfigCache) -> None:
    t = trunk(1, domain_name="a.pstn.trunkline.local")
    await store.apply(Batch().put(t))
    assert await cache.get(Trunk, t.sid) == t
    assert await cache.get(Trunk, t.sid) == t
    assert store.reads["get"] == 1


async def test_negative_answers_are_cached_too(store: Counting, cache: ConfigCache) -> None:
    assert await cache.get(Trunk, "TK" + "0" * 32) is None
    assert await cache.get(Trunk, "TK" + "0" * 32) is None
    assert await cache.holder(claims.PHONE_NUMBER, "+14155550100") is None
    assert await cache.holder(claims.PHONE_NUMBER, "+14155550100") is None
    assert store.reads == {"get": 1, "holder": 1}


async def test_holder_finds_the_claim_owner(store: Counting, cache: ConfigCache) -> None:
    await store.apply(Batch().claim(claims.TRUNK_DOMAIN, "a.pstn.trunkline.local", "TK1"))
    assert await cache.holder(claims.TRUNK_DOMAIN, "a.pstn.trunkline.local") == "TK1"
    assert await cache.holder(claims.TRUNK_DOMAIN, "b.pstn.trunkline.local") is None


async def test_an_entry_expires_after_the_ttl(
    store: Counting, cache: ConfigCache, clock: Clock
) -> None:
    t = trunk(1, friendly_name="old")
    await store.apply(Batch().put(t))
    await cache.get(Trunk, t.sid)
    await store.apply(Batch().put(replace(t, friendly_name="new")))
    clock.now += 29.9
    cached = await cache.get(Trunk, t.sid)
    assert cached is not None and cached.friendly_name == "old"
    clock.now += 0.2
    fresh = await cache.get(Trunk, t.sid)
    assert fresh is not None and fresh.friendly_name == "new"
    assert store.reads["get"] == 2


async def test_the_least_recently_used_entry_goes_first(store: Counting, clock: Clock) -> None:
    cache = ConfigCache(store, ttl=30.0, max_entries=2, clock=clock)
    a, b, c = (f"TK{n:032x}" for n in (1, 2, 3))
    await cache.get(Trunk, a)
    await cache.get(Trunk, b)
    await cache.get(Trunk, a)  # a is now the most recently used
    await cache.get(Trunk, c)  # evicts b
    assert len(cache) == 2
    assert store.reads["get"] == 3
    await cache.get(Trunk, a)
    await cache.get(Trunk, c)
    assert store.reads["get"] == 3
    await cache.get(Trunk, b)
    assert store.reads["get"] == 4


async def test_concurrent_misses_share_one_store_read(store: Counting, cache: ConfigCache) -> None:
    t = trunk(1)
    await store.apply(Batch().put(t))
    store.gate = asyncio.Event()
    readers = [asyncio.ensure_future(cache.get(Trunk, t.sid)) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*readers) == [t] * 20
    assert store.reads["get"] == 1


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept(
    store: Counting, cache: ConfigCache
) -> None:
    store.gate = asyncio.Event()
    store.fail = ConnectionError("store down")
    readers = [asyncio.ensure_future(cache.holder("ns", "v")) for _ in range(3)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert store.reads["holder"] == 1
    store.gate, store.fail = None, None
    assert await cache.holder("ns", "v") is None
    assert store.reads["holder"] == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_read(
    store: Counting, cache: ConfigCache
) -> None:
    t = trunk(1)
    await store.apply(Batch().put(t))
    store.gate = asyncio.Event()
    impatient = asyncio.ensure_future(cache.get(Trunk, t.sid))
    patient = asyncio.ensure_future(cache.get(Trunk, t.sid))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    store.gate.set()
    assert await patient == t
    assert impatient.cancelled()
    assert store.reads["get"] == 1
    assert await cache.get(Trunk, t.sid) == t
    assert store.reads["get"] == 1


async def test_list_all_reads_every_page_in_order(store: Counting, clock: Clock) -> None:
    cache = ConfigCache(store, ttl=30.0, page_size=2, clock=clock)
    trunks = [trunk(n) for n in range(5)]
    batch = Batch()
    for t in reversed(trunks):
        batch.put(t)
    await store.apply(batch)
    assert await cache.list_all(Trunk, "account", ACCOUNT) == trunks
    assert store.reads["list"] == 3  # 2 + 2 + 1
    listed = await cache.list_all(Trunk, "account", ACCOUNT)
    listed.clear()  # callers get a copy: the cached partition is untouched
    assert await cache.list_all(Trunk, "account", ACCOUNT) == trunks
    assert store.reads["list"] == 3
    assert await cache.list_all(Trunk, "account", "AC" + "b" * 32) == []


async def test_a_partition_of_exactly_one_page_needs_one_more_read(
    store: Counting, clock: Clock
) -> None:
    cache = ConfigCache(store, ttl=30.0, page_size=2, clock=clock)
    await store.apply(Batch().put(trunk(1)).put(trunk(2)))
    assert len(await cache.list_all(Trunk, "account", ACCOUNT)) == 2
    assert store.reads["list"] == 2


async def test_invalidate_all_forgets_everything(store: Counting, cache: ConfigCache) -> None:
    await cache.get(Trunk, "TK" + "0" * 32)
    await cache.holder("ns", "v")
    cache.invalidate_all()
    assert len(cache) == 0
    await cache.get(Trunk, "TK" + "0" * 32)
    await cache.holder("ns", "v")
    assert store.reads == {"get": 2, "holder": 2}


async def test_a_read_in_flight_during_invalidation_answers_but_is_not_kept(
    store: Counting, cache: ConfigCache
) -> None:
    t = trunk(1, friendly_name="old")
    await store.apply(Batch().put(t))
    store.gate = asyncio.Event()
    early = asyncio.ensure_future(cache.get(Trunk, t.sid))
    await asyncio.sleep(0)
    cache.invalidate_all()  # a change was announced while the read was on its way
    store.gate.set()
    assert await early == t
    await store.apply(Batch().put(replace(t, friendly_name="new")))
    later = await cache.get(Trunk, t.sid)
    assert later is not None and later.friendly_name == "new"
    assert store.reads["get"] == 2


async def test_a_zero_ttl_keeps_nothing(store: Counting, clock: Clock) -> None:
    cache = ConfigCache(store, ttl=0, clock=clock)
    await cache.get(Trunk, "TK" + "0" * 32)
    await cache.get(Trunk, "TK" + "0" * 32)
    assert store.reads["get"] == 2
    assert len(cache) == 0


def test_the_ttl_comes_from_the_environment() -> None:
    assert ttl_from_env({}) == DEFAULT_TTL == 30.0
    assert ttl_from_env({"TRUNKLINE_CONFIG_CACHE_TTL": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="TRUNKLINE_CONFIG_CACHE_TTL"):
        ttl_from_env({"TRUNKLINE_CONFIG_CACHE_TTL": "soon"})
    with pytest.raises(ValueError, match="negative"):
        ttl_from_env({"TRUNKLINE_CONFIG_CACHE_TTL": "-1"})


# --- invalidation by configuration-change notices (a real nats-server) ---------------------


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


async def eventually_empty(cache: ConfigCache, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while len(cache):
            await asyncio.sleep(0.01)


async def test_every_notice_clears_the_cache(
    store: Counting, cache: ConfigCache, nats_server: NatsServer
) -> None:
    t = trunk(1, friendly_name="old")
    await store.apply(Batch().put(t))
    await cache.get(Trunk, t.sid)  # cached before following: follow() clears it
    await cache.follow(nats_server.url)
    publisher = await ConfigPublisher.connect(nats_server.url, name="trunkline-test-api")
    try:
        assert len(cache) == 0
        await cache.get(Trunk, t.sid)
        await cache.holder(claims.PHONE_NUMBER, "+14155550100")
        assert len(cache) == 2
        await store.apply(Batch().put(replace(t, friendly_name="new")))
        # Any notice clears everything, whichever resource it names.
        await publisher.publish(ACCOUNT, "phone_numbers", "PN" + "1" * 32, "updated")
        await eventually_empty(cache)
        fresh = await cache.get(Trunk, t.sid)
        assert fresh is not None and fresh.friendly_name == "new"
    finally:
        await publisher.close()
        await cache.close()


async def test_following_twice_is_refused(cache: ConfigCache, nats_server: NatsServer) -> None:
    await cache.follow(nats_server.url)
    try:
        with pytest.raises(RuntimeError, match="already"):
            await cache.follow(nats_server.url)
    finally:
        await cache.close()
    await cache.close()  # closing twice is harmless
