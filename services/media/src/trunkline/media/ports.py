"""UDP port allocation for relayed media, without I/O.

Each call leg gets an even RTP port and the odd port above it for RTCP (RFC 3550 11: "RTP
SHOULD use an even destination port number and the corresponding RTCP stream SHOULD use
the next higher (odd) destination port number"). With rtcp-mux (RFC 5761) a leg needs only
the even port, but the odd port above it stays reserved, so every allocation is identified
by its even base and allocation and release are O(1).

Released ports are held in quarantine for a configurable time before they are handed out
again, so that late packets of an ended call cannot reach the next call on the same port.
The clock is an input (seconds, from a monotonic source).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# The range the platform's media pods use (the trunking guide's "media port range").
DEFAULT_MIN_PORT = 10000
DEFAULT_MAX_PORT = 60000
# Long enough for packets of a torn-down call (and RTCP BYE stragglers) to die out.
DEFAULT_QUARANTINE = 30.0


class PortError(Exception):
    """Base class of the port allocator's errors."""


class PortsExhausted(PortError):
    """Every port of the range is in use or in quarantine."""


class PortReleaseError(PortError):
    """A release of ports that this allocator has not handed out (foreign, or released twice)."""


@dataclass(frozen=True, slots=True)
class PortAllocation:
    """The ports of one leg: `rtcp` is `rtp + 1`, or None when RTCP is multiplexed."""

    rtp: int
    rtcp: int | None

    @property
    def rtcp_mux(self) -> bool:
        return self.rtcp is None

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.rtp,) if self.rtcp is None else (self.rtp, self.rtcp)


class PortAllocator:
    """Hands out RTP/RTCP port pairs from `[min_port, max_port]`.

    Free pairs are kept in FIFO order, so a released pair goes to the back of the line
    even after its quarantine ends; quarantined pairs wait in release order, which makes
    expiring them amortised O(1) as long as the clock does not go backwards.
    """

    def __init__(
        self,
        min_port: int = DEFAULT_MIN_PORT,
        max_port: int = DEFAULT_MAX_PORT,
        *,
        quarantine: float = DEFAULT_QUARANTINE,
    ) -> None:
        if not 1 <= min_port <= max_port <= 65535:
            raise ValueError(f"invalid port range {min_port}-{max_port}")
        if quarantine < 0:
            raise ValueError(f"quarantine must not be negative, got {quarantine}")
        first = min_port + (min_port % 2)
        # The last even port whose odd partner is still inside the range.
        last = max_port - 1 if max_port % 2 else max_port - 2
        if first > last:
            raise ValueError(f"port range {min_port}-{max_port} holds no even/odd pair")
        self.min_port = min_port
        self.max_port = max_port
        self.quarantine = quarantine
        self._first = first
        self._last = last
        self._free: deque[int] = deque(range(first, last + 1, 2))
        self._quarantined: deque[tuple[float, int]] = deque()
        self._quarantined_set: set[int] = set()
        # even base -> whether the allocation uses rtcp-mux
        self._allocated: dict[int, bool] = {}
        self._now = float("-inf")

    @property
    def capacity(self) -> int:
        """How many legs the range can hold at once."""
        return (self._last - self._first) // 2 + 1

    @property
    def in_use(self) -> int:
        """Allocations currently handed out."""
        return len(self._allocated)

    @property
    def ports_in_use(self) -> int:
        """UDP ports currently handed out (one per rtcp-mux leg, two otherwise)."""
        return sum(1 if mux else 2 for mux in self._allocated.values())

    @property
    def quarantined(self) -> int:
        """Released pairs not yet available again."""
        return len(self._quarantined)

    @property
    def available(self) -> int:
        """Pairs that could be allocated right now (quarantine expiry aside)."""
        return len(self._free)

    def allocate(self, now: float, *, rtcp_mux: bool = False) -> PortAllocation:
        """Allocate an even RTP port, plus `RTP + 1` for RTCP unless `rtcp_mux`."""
        self._advance(now)
        if not self._free:
            raise PortsExhausted(
                f"no free media ports in {self.min_port}-{self.max_port}: "
                f"{self.in_use} in use, {self.quarantined} in quarantine"
            )
        base = self._free.popleft()
        self._allocated[base] = rtcp_mux
        return PortAllocation(base, None if rtcp_mux else base + 1)

    def release(self, allocation: PortAllocation, now: float) -> None:
        """Return an allocation; its pair is quarantined until `now + quarantine`."""
        self._advance(now)
        base = allocation.rtp
        if base % 2 or not self._first <= base <= self._last:
            raise PortReleaseError(
                f"port {base} was not allocated here: not an even port of "
                f"{self.min_port}-{self.max_port}"
            )
        mux = self._allocated.get(base)
        if mux is None:
            why = "already released" if base in self._quarantined_set else "not allocated"
            raise PortReleaseError(f"cannot release port {base}: {why}")
        if mux != allocation.rtcp_mux or (
            allocation.rtcp is not None and allocation.rtcp != base + 1
        ):
            raise PortReleaseError(
                f"cannot release {allocation}: port {base} was allocated "
                f"{'with' if mux else 'without'} rtcp-mux"
            )
        del self._allocated[base]
        if self.quarantine == 0:
            self._free.append(base)
        else:
            self._quarantined.append((now + self.quarantine, base))
            self._quarantined_set.add(base)

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"clock went backwards: {now} < {self._now}")
        self._now = now
        while self._quarantined and self._quarantined[0][0] <= now:
            _, base = self._quarantined.popleft()
            self._quarantined_set.discard(base)
            self._free.append(base)
