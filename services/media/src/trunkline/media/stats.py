"""Per-leg reception statistics (RFC 3550 appendix A), without I/O.

Loss follows RFC 3550 A.1 (extended sequence numbers with 16-bit wraparound, reordering,
restart detection) and A.3 (expected = extended highest - base + 1, lost = expected -
received). Jitter follows A.8. A packet is *late* when it arrives more than `late_after`
seconds after the time its RTP timestamp says it was due; the reference is the first
packet, moved earlier whenever a packet arrives ahead of it, so that a delayed first
packet does not hide later lateness. Arrival times are inputs, in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RTP_SEQ_MOD = 1 << 16
# RFC 3550 A.1: how far ahead a sequence number may jump, and how far behind it may be, to
# still count as the same stream (values from the RFC's example code).
MAX_DROPOUT = 3000
MAX_MISORDER = 100
G711_CLOCK_RATE = 8000
DEFAULT_LATE_AFTER = 0.050


class _Seq(Enum):
    COUNT = 1
    DISCARD = 2
    RESTART = 3


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A leg's statistics at one moment, as the control API reports them."""

    packets: int
    """Packets received, including ones the sequence check discarded."""
    bytes: int
    """Octets received (whole RTP packets, header included)."""
    expected: int
    """RFC 3550 A.3: extended highest sequence number - base + 1."""
    lost: int
    """RFC 3550 A.3: expected - received; negative when duplicates arrived."""
    jitter: float
    """RFC 3550 A.8 interarrival jitter, in seconds."""
    late: int
    """Packets that arrived more than `late_after` after they were due."""
    srtp_auth_failures: int
    """Packets dropped because SRTP authentication failed (RFC 3711 3.3)."""
    first_arrival: float | None
    last_arrival: float | None

    @property
    def fraction_lost(self) -> float:
        return max(self.lost, 0) / self.expected if self.expected > 0 else 0.0


class LegStats:
    """Reception statistics of one leg's incoming RTP stream."""

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_before",
        "_ext_ts",
        "_first_arrival",
        "_jitter",
        "_last_arrival",
        "_max_seq",
        "_received",
        "_received_before",
        "_reference",
        "bytes",
        "clock_rate",
        "late",
        "late_after",
        "packets",
        "srtp_auth_failures",
    )

    def __init__(
        self, clock_rate: int = G711_CLOCK_RATE, *, late_after: float = DEFAULT_LATE_AFTER
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self.late_after = late_after
        self.packets = 0
        self.bytes = 0
        self.late = 0
        self.srtp_auth_failures = 0
        self._first_arrival: float | None = None
        self._last_arrival = 0.0
        # RFC 3550 A.1 source state; `_received` counts the current sequence run.
        self._base_seq = 0
        self._max_seq = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        # Totals of the runs before a detected restart, so counts stay cumulative.
        self._expected_before = 0
        self._received_before = 0
        # Timestamp of the previous packet, unwrapped to an unbounded integer.
        self._ext_ts = 0
        self._jitter = 0.0
        # arrival - timestamp/clock_rate of the earliest-arriving packet seen (seconds).
        self._reference = 0.0

    def on_packet(self, sequence_number: int, timestamp: int, size: int, arrival: float) -> None:
        """Account one received RTP packet (its header fields, length and arrival time)."""
        self.packets += 1
        self.bytes += size
        if sequence_number == self._max_seq + 1 and self._first_arrival is not None:
            # The common case, inlined for the relay's per-packet path: the next packet in
            # order (A.1 update_seq's first branch without a wrap).
            self._max_seq = sequence_number
        else:
            if self._first_arrival is None:
                self._first_arrival = arrival
                self._init_seq(sequence_number)
                self._received = 1
                self._start_timing(timestamp, arrival)
                return
            outcome = self._update_seq(sequence_number)
            if outcome is _Seq.DISCARD:
                return
            if outcome is _Seq.RESTART:
                self._received += 1
                self._start_timing(timestamp, arrival)
                return
        self._received += 1
        # Unwrap the 32-bit timestamp against the previous packet's (RFC 3550 5.1 wraps it).
        delta = (timestamp - self._ext_ts) & 0xFFFFFFFF
        ext_ts = self._ext_ts + (delta - 0x100000000 if delta & 0x80000000 else delta)
        # RFC 3550 A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si) in timestamp units, and
        # J += (|D| - J) / 16.
        d = (arrival - self._last_arrival) * self.clock_rate - (ext_ts - self._ext_ts)
        self._jitter += (abs(d) - self._jitter) / 16
        self._ext_ts = ext_ts
        self._last_arrival = arrival
        transit = arrival - ext_ts / self.clock_rate
        if transit < self._reference:
            self._reference = transit
        elif transit - self._reference > self.late_after:
            self.late += 1

    def on_srtp_auth_failure(self) -> None:
        """Count a packet dropped because its SRTP authentication tag did not verify."""
        self.srtp_auth_failures += 1

    @property
    def expected(self) -> int:
        if self._first_arrival is None:
            return 0
        # RFC 3550 A.3: extended_max = cycles + max_seq; expected = extended_max - base + 1.
        run = self._cycles + self._max_seq - self._base_seq + 1
        return self._expected_before + run

    @property
    def received(self) -> int:
        """Packets the sequence check accepted (RFC 3550 A.1 `received`)."""
        return self._received_before + self._received

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """RFC 3550 A.8 interarrival jitter, in seconds."""
        return self._jitter / self.clock_rate

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            packets=self.packets,
            bytes=self.bytes,
            expected=self.expected,
            lost=self.lost,
            jitter=self.jitter,
            late=self.late,
            srtp_auth_failures=self.srtp_auth_failures,
            first_arrival=self._first_arrival,
            last_arrival=None if self._first_arrival is None else self._last_arrival,
        )

    def _init_seq(self, seq: int) -> None:
        # RFC 3550 A.1 init_seq().
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._received = 0

    def _start_timing(self, timestamp: int, arrival: float) -> None:
        # A (re)started sender picks a random timestamp base (RFC 3550 5.1): start over.
        self._ext_ts = timestamp
        self._last_arrival = arrival
        self._reference = arrival - timestamp / self.clock_rate

    def _update_seq(self, seq: int) -> _Seq:
        # RFC 3550 A.1 update_seq(), without the probation of a new source: latching has
        # already tied the stream to its sender.
        udelta = (seq - self._max_seq) % RTP_SEQ_MOD
        if udelta < MAX_DROPOUT:
            # In order, with a permissible gap.
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump.
            if seq == self._bad_seq:
                # Two sequential packets: the sender restarted without telling us. Keep
                # the old run's totals and start a new run.
                self._expected_before = self.expected
                self._received_before = self.received
                self._init_seq(seq)
                return _Seq.RESTART
            self._bad_seq = (seq + 1) % RTP_SEQ_MOD
            return _Seq.DISCARD
        # Otherwise a duplicate or reordered packet: counted as received, as in A.1.
        return _Seq.COUNT
