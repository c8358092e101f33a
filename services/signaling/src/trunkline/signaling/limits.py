"""Admission limits of the signaling service: calls per second, concurrent calls, OPTIONS pings.

Nothing here reads the time by itself: each limiter is given a clock, a callable returning
seconds on a monotonic scale (by default `time.monotonic`, which asyncio's `loop.time` also
reads; in tests a number moved by hand).
Memory is bounded by design, since keys come from the network: entries that carry no more
information than a fresh one are dropped as soon as that is true, and a hard cap evicts the
least recently used beyond it.

* `TokenBucket` / `CpsLimiter`: calls per second per (trunk, edge). The platform default is 1
  CPS per trunk per region (Twilio's documented default); a trunk with its own rate passes it.
  A refused call is answered 503 (Twilio 32001).
* `ConcurrencyLimit`: concurrent calls per key, acquired on admission, released exactly once
  when the call ends.
* `PingGuard`: a source that sends OPTIONS more often than once per 10 s is ignored for a
  while (the guide asks PBXs to ping less often than once every 10-15 s).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeAlias, TypeVar

__all__ = [
    "DEFAULT_CPS",
    "MAX_KEYS",
    "PING_INTERVAL",
    "PING_PENALTY",
    "Clock",
    "ConcurrencyLimit",
    "CpsLimiter",
    "PingGuard",
    "TokenBucket",
    "default_burst",
]

Clock: TypeAlias = Callable[[], float]
K = TypeVar("K", bound=Hashable)

DEFAULT_CPS: Final = 1.0  # calls per second per trunk per edge, unless the trunk sets its own
PING_INTERVAL: Final = 10.0  # at most one OPTIONS per source in this many seconds
PING_PENALTY: Final = 60.0  # seconds a source that pinged too often is ignored
MAX_KEYS: Final = 100_000  # default cap on tracked keys / sources per limiter
# Float slack when comparing token levels: 3 CPS refilled over 1/3 s must give a whole token.
_EPSILON: Final = 1e-9


def _positive(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value)


class TokenBucket:
    """A token bucket: holds up to `burst` tokens, refills at `rate` tokens per second, and
    starts full. `take()` spends one token (a call) if there is one."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = _positive("rate", rate)
        self.burst = _positive("burst", burst)
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 (one call), not {burst!r}")
        self._clock = clock
        self._last = clock()
        self._tokens = self.burst

    def _refill(self) -> float:
        now = self._clock()
        if now > self._last:  # a clock that steps back adds nothing and takes nothing
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        return now

    def take(self, tokens: float = 1.0) -> bool:
        if not 0 < tokens <= self.burst:
            raise ValueError(f"tokens must be in (0, burst={self.burst}], not {tokens!r}")
        self._refill()
        if self._tokens + _EPSILON < tokens:
            return False
        self._tokens = max(0.0, self._tokens - tokens)
        return True

    @property
    def tokens(self) -> float:
        """The tokens available now."""
        self._refill()
        return self._tokens

    def reconfigure(self, rate: float, burst: float) -> None:
        """Change the rate and burst (a trunk's limit changed), keeping the tokens earned so
        far at the old rate, capped at the new burst."""
        rate, burst = _positive("rate", rate), _positive("burst", burst)
        if burst < 1:
            raise ValueError(f"burst must be at least 1 (one call), not {burst!r}")
        self._refill()
        self.rate, self.burst = rate, burst
        self._tokens = min(self._tokens, burst)

    def full_at(self) -> float:
        """The clock time from which the bucket is full again (no different from a new one)."""
        return self._last + (self.burst - self._tokens) / self.rate


def default_burst(rate: float) -> float:
    """One second's worth of calls, and at least one call."""
    return max(1.0, rate)


class CpsLimiter(Generic[K]):
    """Calls per second per key (a trunk and edge): one `TokenBucket` per key, created on first
    use with `rate` (the trunk's own, else `default_rate`) and a burst of one second's worth.

    A bucket that has refilled completely is forgotten, since a new one would behave the
    same. Beyond `max_keys` live buckets the least recently used is dropped (its key then
    starts afresh with a full bucket: a flood of keys can only make the limiter more lenient
    to the keys it evicts, never stricter).
    """

    __slots__ = ("_buckets", "_clock", "default_rate", "max_keys")

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        default_rate: float = DEFAULT_CPS,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._clock = clock
        self.default_rate = _positive("default_rate", default_rate)
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys!r}")
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def take(self, key: K, rate: float | None = None, burst: float | None = None) -> bool:
        """Admit one call for `key` if its rate allows it now."""
        rate = self.default_rate if rate is None else rate
        burst = default_burst(rate) if burst is None else burst
        now = self._clock()
        self._prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst, self._clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            if bucket.rate != rate or bucket.burst != burst:
                bucket.reconfigure(rate, burst)
            self._buckets.move_to_end(key)
        return bucket.take()

    def _prune(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key, bucket = next(iter(buckets.items()))
            if bucket.full_at() > now:
                break
            del buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class ConcurrencyLimit(Generic[K]):
    """Concurrent calls per key. `acquire` admits a call if the key is below its limit
    (`limit`, or the one passed for this key: a trunk's own); `release` ends one, and never
    takes a key below zero. Keys with no calls are not kept. `limit=None`: count only."""

    __slots__ = ("_active", "limit")

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit!r}")
        self.limit = limit
        self._active: dict[K, int] = {}

    def acquire(self, key: K, limit: int | None = None) -> bool:
        limit = self.limit if limit is None else limit
        count = self._active.get(key, 0)
        if limit is not None and count >= limit:
            return False
        self._active[key] = count + 1
        return True

    def release(self, key: K) -> None:
        count = self._active.get(key, 0)
        if count <= 1:
            self._active.pop(key, None)  # a release without an acquire is ignored
        else:
            self._active[key] = count - 1

    def active(self, key: K) -> int:
        return self._active.get(key, 0)

    def __len__(self) -> int:
        """The number of keys with at least one call."""
        return len(self._active)


class PingGuard(Generic[K]):
    """OPTIONS keep-alives: one per source per `interval` seconds is answered. A source that
    pings again sooner is ignored (not answered at all) for `penalty` seconds from that ping;
    pings during the penalty are ignored and do not extend it, so a PBX pinging too often still
    gets an answer about once per penalty and notices (a growing penalty would hide it for ever).

    Feed it new OPTIONS transactions only: retransmissions of one (RFC 3261 17.2.2) are the
    transaction layer's, which repeats its answer. The source is what the caller chooses as
    key, typically the source IP address.
    """

    __slots__ = ("_clock", "_sources", "interval", "max_sources", "penalty")

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        interval: float = PING_INTERVAL,
        penalty: float = PING_PENALTY,
        max_sources: int = MAX_KEYS,
    ) -> None:
        self._clock = clock
        self.interval = _positive("interval", interval)
        if not math.isfinite(penalty) or penalty < 0:
            raise ValueError(f"penalty must be a non-negative number, not {penalty!r}")
        self.penalty = float(penalty)
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, not {max_sources!r}")
        self.max_sources = max_sources
        # source -> (until, banned): until `until` a ping is a violation (banned=False) or
        # ignored (banned=True); ordered by when the entry was last written.
        self._sources: OrderedDict[K, tuple[float, bool]] = OrderedDict()

    def allow(self, source: K) -> bool:
        """Whether to answer this OPTIONS from `source`."""
        now = self._clock()
        self._prune(now)
        entry = self._sources.get(source)
        if entry is None or now >= entry[0]:
            self._write(source, (now + self.interval, False))
            return True
        if entry[1]:
            return False
        self._write(source, (now + self.penalty, True))
        return False

    def ignored(self, source: K) -> bool:
        """Whether `source` is serving a penalty now."""
        entry = self._sources.get(source)
        return entry is not None and entry[1] and self._clock() < entry[0]

    def _write(self, source: K, entry: tuple[float, bool]) -> None:
        self._sources[source] = entry
        self._sources.move_to_end(source)
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)

    def _prune(self, now: float) -> None:
        # Entries are ordered by write time, and an expired one is no different from none.
        # Expiry is not quite monotonic in that order (intervals and penalties differ), so an
        # expired entry may wait behind a live one; the cap still bounds them all.
        sources = self._sources
        while sources:
            source, (until, _) = next(iter(sources.items()))
            if until > now:
                break
            del sources[source]

    def __len__(self) -> int:
        return len(self._sources)
