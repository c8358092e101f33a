"""Transaction timer values (RFC 3261 17 and the table of timers in appendix A) and the
deadline queue the transaction layer keeps them in.

Nothing here reads a clock: deadlines are absolute times in seconds on whatever monotonic
clock the caller feeds in (`now`), so tests drive time by hand.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar


class Timer(StrEnum):
    """The timers of RFC 3261 17 (A to K), RFC 6026 (L, M) and three the layer adds."""

    A = "A"  # 17.1.1.2: INVITE client retransmission, unreliable transports only
    B = "B"  # 17.1.1.2: INVITE client timeout, 64*T1
    D = "D"  # 17.1.1.2: INVITE client Completed wait for response retransmissions
    E = "E"  # 17.1.2.2: non-INVITE client retransmission, unreliable transports only
    F = "F"  # 17.1.2.2: non-INVITE client timeout, 64*T1
    G = "G"  # 17.2.1: INVITE server final-response retransmission, unreliable only
    H = "H"  # 17.2.1: INVITE server wait for ACK, 64*T1
    I = "I"  # noqa: E741  # 17.2.1: INVITE server Confirmed wait for ACK retransmissions
    J = "J"  # 17.2.2: non-INVITE server Completed wait for request retransmissions
    K = "K"  # 17.1.2.2: non-INVITE client Completed wait for response retransmissions
    L = "L"  # RFC 6026 8.7: INVITE server Accepted state, 64*T1
    M = "M"  # RFC 6026 8.4: INVITE client Accepted state, 64*T1
    TRYING = "100"  # 17.2.1: send 100 Trying if the TU has not answered within 200 ms
    RETRANSMIT_2XX = "2xx"  # 13.3.1.4: the UAS retransmits a 2xx until the ACK arrives
    CANCEL = "cancel"  # 9.1: give up on a cancelled INVITE after 64*T1 without a final


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1, T2, T4 and the policies derived from them (RFC 3261 17.1.1.1, appendix A).

    `trying_delay` is the 17.2.1 policy for INVITE server transactions: 0.2 s (the RFC's
    200 ms) sends 100 Trying only when the TU is slow, 0 sends it at once, None never
    (the TU answers itself). `retransmit_2xx_on_reliable` keeps RFC 3261 13.3.1.4, which
    retransmits a 2xx end to end even over TCP/TLS because a proxy further along may use
    UDP; set it False to retransmit 2xx on unreliable transports only.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float | None = 0.2
    retransmit_2xx_on_reliable: bool = True

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.t2 < self.t1:
            raise ValueError(f"t2 ({self.t2}) must not be below t1 ({self.t1})")
        if self.trying_delay is not None and (
            not math.isfinite(self.trying_delay) or self.trying_delay < 0
        ):
            raise ValueError(f"trying_delay must be >= 0 or None, not {self.trying_delay!r}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TimerConfig:
        """Read TRUNKLINE_SIP_T1, _T2, _T4 (seconds) and TRUNKLINE_SIP_TRYING_DELAY
        (seconds, or "never"); anything absent keeps the RFC default."""
        defaults = cls()

        def seconds(name: str, default: float) -> float:
            raw = environ.get(name)
            return default if raw is None or raw.strip() == "" else float(raw)

        trying_raw = environ.get("TRUNKLINE_SIP_TRYING_DELAY")
        trying: float | None
        if trying_raw is None or trying_raw.strip() == "":
            trying = defaults.trying_delay
        elif trying_raw.strip().lower() == "never":
            trying = None
        else:
            trying = float(trying_raw)
        return cls(
            t1=seconds("TRUNKLINE_SIP_T1", defaults.t1),
            t2=seconds("TRUNKLINE_SIP_T2", defaults.t2),
            t4=seconds("TRUNKLINE_SIP_T4", defaults.t4),
            trying_delay=trying,
        )

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J (unreliable), L, M and the 9.1 CANCEL wait."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        # 17.1.1.2: "at least 32 seconds for unreliable transports, zero for reliable".
        # With a T1 above 500 ms the server retransmits for 64*T1, so D covers that too.
        return 0.0 if reliable else max(32.0, self.timeout)

    def timer_i(self, reliable: bool) -> float:
        # 17.2.1: T4 for unreliable transports, zero for reliable ones.
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        # 17.2.2: 64*T1 for unreliable transports, zero for reliable ones.
        return 0.0 if reliable else self.timeout

    def timer_k(self, reliable: bool) -> float:
        # 17.1.2.2: T4 for unreliable transports, zero for reliable ones.
        return 0.0 if reliable else self.t4

    def doubled(self, interval: float, *, cap_at_t2: bool) -> float:
        """The next retransmission interval. Timer A doubles without a cap (17.1.1.2);
        E, G and the 2xx retransmission double until T2 (17.1.2.2, 17.2.1, 13.3.1.4)."""
        doubled = 2 * interval
        return min(doubled, self.t2) if cap_at_t2 else doubled


K = TypeVar("K")


class TimerQueue(Generic[K]):
    """Deadlines ordered by time, with O(log n) scheduling and lazy cancellation.

    `schedule` returns a handle; `cancel(handle)` marks it dead and dead entries are
    skipped when they reach the top. The heap is rebuilt when dead entries outnumber live
    ones, so a flood of cancelled timers cannot grow it without bound.
    """

    __slots__ = ("_heap", "_live", "_next_handle")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[int, float] = {}
        self._next_handle = 0

    def __len__(self) -> int:
        """Live (not cancelled, not fired) timers."""
        return len(self._live)

    @property
    def heap_size(self) -> int:
        """Entries held, dead ones included (at most 2 * len(self) + 64)."""
        return len(self._heap)

    def schedule(self, at: float, key: K) -> int:
        handle = self._next_handle
        self._next_handle += 1
        heapq.heappush(self._heap, (at, handle, key))
        self._live[handle] = at
        return handle

    def cancel(self, handle: int) -> None:
        if self._live.pop(handle, None) is not None:
            self._compact()

    def deadline(self, handle: int) -> float | None:
        return self._live.get(handle)

    def next_deadline(self) -> float | None:
        self._drop_dead()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[float, int, K] | None:
        """The earliest live timer due at or before `now`, removed; None if none is due."""
        self._drop_dead()
        if not self._heap or self._heap[0][0] > now:
            return None
        at, handle, key = heapq.heappop(self._heap)
        del self._live[handle]
        self._compact()
        return at, handle, key

    def _drop_dead(self) -> None:
        heap = self._heap
        while heap and heap[0][1] not in self._live:
            heapq.heappop(heap)

    def _compact(self) -> None:
        # Keeps heap_size <= 2 * len(self) + 64 after every operation, at amortized O(1):
        # a rebuild costs O(n) and only follows more than n/2 cancellations.
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [entry for entry in self._heap if entry[1] in self._live]
            heapq.heapify(self._heap)
