"""Brute-force lockout: a source that fails authentication too often is not answered at all.

Failures (a source outside the trunk's ACLs, a wrong or malformed digest) are counted per
source in a sliding window. The failure that reaches the limit locks the source out for a
fixed time, during which the auth service answers IGNORE: signaling then sends nothing, so a
guesser learns nothing about the digest, not even that its requests arrive. Once the lockout
ends, counting starts afresh.

An IPv4 source is one address. An IPv6 source is its /64: a host normally holds a whole /64
(RFC 7421), so locking out one address of it would let an attacker walk through the others.

The state is per process and in memory: with several auth pods behind signaling, a source
gets up to `failures` attempts per window at each of them. Memory is bounded: at most
`max_sources` sources are counted and `max_sources` locked out, the least recently active
(respectively the soonest to expire) forgotten first.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["Lockout", "SourceAddress", "source_key"]

SourceAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def source_key(address: SourceAddress) -> str:
    """What one source is for counting: the IPv4 address, or the /64 of an IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class Lockout:
    """Counts failures per source in a sliding `window` (seconds); the `failures`-th within
    one window locks the source out for `duration` seconds. `clock` is monotonic seconds."""

    def __init__(
        self,
        *,
        failures: int = 10,
        window: float = 60.0,
        duration: float = 300.0,
        max_sources: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or max_sources < 1:
            raise ValueError("failures and max_sources must be positive")
        if window <= 0 or duration <= 0:
            raise ValueError("window and duration must be positive")
        self.failures = failures
        self.window = window
        self.duration = duration
        self._max = max_sources
        self._clock = clock
        # source -> the times of its recent failures, least recently failing source first.
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        # source -> end of its lockout; every lockout lasts `duration`, so insertion order
        # is expiry order.
        self._locked: OrderedDict[str, float] = OrderedDict()

    def locked(self, address: SourceAddress) -> bool:
        """Whether `address` is locked out now."""
        self._expire(self._clock())
        return source_key(address) in self._locked

    def failed(self, address: SourceAddress) -> bool:
        """Count one failure of `address`; True when this failure locks it out."""
        now = self._clock()
        self._expire(now)
        key = source_key(address)
        if key in self._locked:
            return False
        times = self._recent.pop(key, None)
        if times is None:
            times = deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        if len(times) < self.failures:
            self._recent[key] = times
            while len(self._recent) > self._max:
                self._recent.popitem(last=False)
            return False
        self._locked[key] = now + self.duration
        while len(self._locked) > self._max:
            self._locked.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._locked:
            key, until = next(iter(self._locked.items()))
            if until > now:
                return
            del self._locked[key]
