"""An in-process cache of configuration reads, invalidated by configuration-change notices.

Services on the call path (auth, signaling) read the same few records for every call: a
trunk, its ACLs and credential lists, an account's numbers. `ConfigCache` keeps what a
`Repository` returned, negative answers (no such record, no claim holder) included, for a
short time:

    cache = ConfigCache(repository)
    await cache.follow("nats://127.0.0.1:4222")   # clear on every configuration change
    trunk = await cache.get(Trunk, trunk_sid)
    owner = await cache.holder(claims.PHONE_NUMBER, "+14155550100")
    links = await cache.list_all(TrunkIpAccessControlList, "trunk", trunk_sid)

Every notice clears the whole cache. Configuration writes are rare next to calls, so the
refill costs little, and clearing everything is simple and safe: no notice has to name
every cached read it affects (a credential's claim, the list partitions of a link, ...).
The TTL bounds how stale an entry can get when notices are lost (NATS down, a reconnect),
and a reconnect to NATS clears the cache too, since notices may have been missed meanwhile.

Concurrent misses of one key share one store read. A read that was in flight when the cache
was cleared still answers its callers but is not kept: it may predate the change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import nats
from nats.aio.client import Client as NATS
from opentelemetry.context import Context

from trunkline.events.config import subscribe_config
from trunkline.store.repository import Cursor, R, Repository
from trunkline.v1.config_pb2 import ConfigChange

__all__ = ["DEFAULT_TTL", "ConfigCache", "ttl_from_env"]

log = logging.getLogger("trunkline.store.cache")

DEFAULT_TTL: Final = 30.0
TTL_VARIABLE: Final = "TRUNKLINE_CONFIG_CACHE_TTL"


def ttl_from_env(env: Mapping[str, str] | None = None) -> float:
    """`TRUNKLINE_CONFIG_CACHE_TTL` in seconds (default 30; 0 keeps nothing but still
    coalesces concurrent reads)."""
    text = (os.environ if env is None else env).get(TTL_VARIABLE, "")
    if not text:
        return DEFAULT_TTL
    try:
        ttl = float(text)
    except ValueError:
        raise ValueError(f"{TTL_VARIABLE} must be a number of seconds, got {text!r}") from None
    if ttl < 0:
        raise ValueError(f"{TTL_VARIABLE} must not be negative")
    return ttl


@dataclass(frozen=True)
class _Entry:
    value: Any
    expires: float


class ConfigCache:
    """Cached reads of a `Repository`; see the module docstring.

    `ttl` (seconds) defaults to TRUNKLINE_CONFIG_CACHE_TTL; at most `max_entries` reads are
    kept, the least recently used dropped first. `clock` is monotonic seconds (tests inject
    their own). `page_size` is the page `list_all` reads a partition with.
    """

    def __init__(
        self,
        repository: Repository,
        *,
        ttl: float | None = None,
        max_entries: int = 10_000,
        page_size: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or page_size < 1:
            raise ValueError("max_entries and page_size must be positive")
        self.repository = repository
        self.ttl = ttl_from_env() if ttl is None else ttl
        if self.ttl < 0:
            raise ValueError("ttl must not be negative")
        self._max = max_entries
        self._page_size = page_size
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Task[Any]] = {}
        # Bumped by every invalidation: a read started under an older generation is not kept.
        self._generation = 0
        self._nc: NATS | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """Bumped by every invalidation (a configuration change, a reconnect): what was
        derived from cached reads under an older generation may be stale."""
        return self._generation

    async def get(self, kind: type[R], key: str) -> R | None:
        """`repository.get(kind, key)`, cached."""
        value = await self._read(("get", kind.KIND, key), lambda: self.repository.get(kind, key))
        return cast("R | None", value)

    async def holder(self, namespace: str, value: str) -> str | None:
        """`repository.holder(namespace, value)`, cached."""
        owner = await self._read(
            ("holder", namespace, value), lambda: self.repository.holder(namespace, value)
        )
        return cast("str | None", owner)

    async def list_all(self, kind: type[R], index: str, value: str) -> list[R]:
        """Every record of one index partition (all pages), in (date_created, key) order."""

        async def read() -> tuple[R, ...]:
            records: list[R] = []
            after: Cursor | None = None
            while True:
                page: Sequence[R] = await self.repository.list(
                    kind, index, value, limit=self._page_size, after=after
                )
                records.extend(page)
                if len(page) < self._page_size:
                    return tuple(records)
                after = Cursor.of(page[-1])

        records = await self._read(("list", kind.KIND, index, value), read)
        return list(cast("tuple[R, ...]", records))

    def invalidate_all(self) -> None:
        """Forget everything; reads in flight still answer their callers but are not kept."""
        self._generation += 1
        self._entries.clear()
        self._inflight.clear()

    async def follow(self, nats_url: str, *, name: str = "trunkline-config-cache") -> None:
        """Connect to NATS at `nats_url` (comma-separated for a cluster) and clear the whole
        cache on every configuration-change notice, whatever it names: configuration writes
        are rare next to calls, so clearing everything is simple and safe (no notice has to
        know which cached reads it affects). Also cleared whenever the connection comes back,
        since notices sent during an outage are lost.

        Returns once subscribed, having cleared the cache so that nothing read before the
        subscription is kept. Raises when no server answers now; later outages are retried
        for as long as the process runs. `close()` stops following."""
        if self._nc is not None:
            raise RuntimeError("already following configuration changes")

        async def reconnected() -> None:
            log.info("reconnected to NATS; configuration cache cleared")
            self.invalidate_all()

        async def disconnected() -> None:
            if self._nc is not None:  # not our own close()
                log.warning("disconnected from NATS; configuration cache entries expire by TTL")

        async def error(problem: Exception) -> None:
            log.warning("NATS client error", extra={"error": repr(problem)})

        nc = await nats.connect(
            [server.strip() for server in nats_url.split(",") if server.strip()],
            name=name,
            max_reconnect_attempts=-1,
            reconnected_cb=reconnected,
            disconnected_cb=disconnected,
            error_cb=error,
        )
        self._nc = nc

        async def changed(change: ConfigChange, context: Context) -> None:
            self.invalidate_all()

        await subscribe_config(nc, changed)
        self.invalidate_all()

    async def close(self) -> None:
        """Stop following configuration changes (the cache itself stays usable)."""
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()

    # --- internals --------------------------------------------------------------------------

    async def _read(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires > self._clock():
                self._entries.move_to_end(key)
                return entry.value
            del self._entries[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fill(key, read, self._generation))
            # Nobody may be left to await a failed read (every caller cancelled).
            task.add_done_callback(_retrieve)
            self._inflight[key] = task
        # Shielded: a caller that gives up (a gRPC deadline) does not cancel the others' read.
        return await asyncio.shield(task)

    async def _fill(
        self, key: Hashable, read: Callable[[], Awaitable[Any]], generation: int
    ) -> Any:
        try:
            value = await read()
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
        if generation == self._generation and self.ttl > 0:
            self._entries[key] = _Entry(value, self._clock() + self.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
