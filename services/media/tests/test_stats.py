"""Per-leg statistics: RFC 3550 A.1/A.3 loss, A.8 jitter, late packets, SRTP failures."""

from __future__ import annotations

import pytest

from trunkline.media.stats import LegStats, StatsSnapshot


def feed(stats: LegStats, seqs: list[int], size: int = 172) -> None:
    """Packets every 20 ms, on time, 160 timestamp units apart by sequence number."""
    for i, seq in enumerate(seqs):
        stats.on_packet(seq, (seq * 160) & 0xFFFFFFFF, size, i * 0.02)


def test_counts_packets_and_bytes() -> None:
    stats = LegStats()
    feed(stats, [0, 1, 2], size=172)
    snap = stats.snapshot()
    assert (snap.packets, snap.bytes, snap.expected, snap.lost) == (3, 516, 3, 0)


def test_empty_snapshot() -> None:
    assert LegStats().snapshot() == StatsSnapshot(
        packets=0,
        bytes=0,
        expected=0,
        lost=0,
        jitter=0.0,
        late=0,
        srtp_auth_failures=0,
        first_arrival=None,
        last_arrival=None,
    )
    assert LegStats().snapshot().fraction_lost == 0.0


def test_gap_counts_as_loss() -> None:
    stats = LegStats()
    feed(stats, [10, 11, 12, 14, 15, 19])
    assert (stats.expected, stats.received, stats.lost) == (10, 6, 4)
    assert stats.snapshot().fraction_lost == pytest.approx(0.4)


def test_reordered_packet_is_not_lost() -> None:
    stats = LegStats()
    feed(stats, [0, 1, 3, 2, 4])
    assert (stats.expected, stats.lost) == (5, 0)


def test_sequence_wraparound_extends_the_sequence_number() -> None:
    stats = LegStats()
    feed(stats, [65534, 65535, 0, 1])
    assert (stats.expected, stats.lost) == (4, 0)


def test_loss_across_the_wrap() -> None:
    stats = LegStats()
    feed(stats, [65535, 1])
    assert (stats.expected, stats.lost) == (3, 1)


def test_reordering_across_the_wrap() -> None:
    stats = LegStats()
    feed(stats, [65534, 0, 65535, 1])
    assert (stats.expected, stats.lost) == (4, 0)


def test_duplicates_make_loss_negative_as_in_a3() -> None:
    stats = LegStats()
    feed(stats, [0, 1, 1, 2])
    assert (stats.expected, stats.received, stats.lost) == (3, 4, -1)
    assert stats.snapshot().fraction_lost == 0.0


def test_single_wild_jump_is_discarded() -> None:
    stats = LegStats()
    feed(stats, [0, 1, 2, 20000, 3])
    assert (stats.packets, stats.expected, stats.received, stats.lost) == (5, 4, 4, 0)


def test_two_sequential_packets_after_a_jump_restart_the_count() -> None:
    # RFC 3550 A.1: the sender restarted; the old run's totals are kept.
    stats = LegStats()
    stats.on_packet(0, 1000, 172, 0.00)
    stats.on_packet(1, 1160, 172, 0.02)
    stats.on_packet(40000, 9_000_000, 172, 0.04)  # discarded, remembered as bad_seq - 1
    stats.on_packet(40001, 9_000_160, 172, 0.06)  # restart
    stats.on_packet(40002, 9_000_320, 172, 0.08)
    assert (stats.packets, stats.expected, stats.received, stats.lost) == (5, 4, 4, 0)
    # The new timestamp base does not show up as jitter or lateness.
    assert stats.jitter == pytest.approx(0.0, abs=1e-12)
    assert stats.late == 0


def test_jitter_follows_rfc3550_a8_for_a_known_pattern() -> None:
    stats = LegStats(8000)
    # (timestamp, arrival): D is 0, +40, -40 and +80 timestamp units.
    for seq, (ts, arrival) in enumerate(
        [(0, 0.000), (160, 0.020), (320, 0.045), (480, 0.060), (640, 0.090)]
    ):
        stats.on_packet(seq, ts, 172, arrival)
    # J1 = 0; J2 = 0 + (40 - 0)/16 = 2.5; J3 = 2.5 + (40 - 2.5)/16 = 4.84375;
    # J4 = 4.84375 + (80 - 4.84375)/16 = 9.541015625 timestamp units.
    assert stats.jitter == pytest.approx(9.541015625 / 8000, rel=1e-9)
    assert stats.snapshot().jitter == stats.jitter


def test_jitter_is_zero_for_perfectly_paced_packets() -> None:
    stats = LegStats()
    feed(stats, list(range(50)))
    assert stats.jitter == pytest.approx(0.0, abs=1e-12)


def test_timestamp_wraparound_is_not_jitter() -> None:
    stats = LegStats()
    stats.on_packet(0, 0xFFFFFF60, 172, 0.00)
    stats.on_packet(1, 0x00000000, 172, 0.02)
    stats.on_packet(2, 0x000000A0, 172, 0.04)
    assert stats.jitter == pytest.approx(0.0, abs=1e-12)
    assert stats.late == 0


def test_packet_more_than_50_ms_late_is_counted() -> None:
    stats = LegStats()
    stats.on_packet(0, 0, 172, 0.000)
    stats.on_packet(1, 160, 172, 0.0699)  # due at 0.020: 49.9 ms late
    stats.on_packet(2, 320, 172, 0.0911)  # due at 0.040: 51.1 ms late
    stats.on_packet(3, 480, 172, 0.0600)  # on time
    assert stats.late == 1


def test_late_reference_moves_to_an_earlier_packet() -> None:
    stats = LegStats()
    stats.on_packet(0, 0, 172, 0.030)  # first packet delayed by 30 ms
    stats.on_packet(1, 160, 172, 0.020)  # on time: the new reference
    stats.on_packet(2, 320, 172, 0.100)  # due at 0.040: 60 ms late (only 30 ms vs the first)
    assert stats.late == 1


def test_late_threshold_is_configurable() -> None:
    stats = LegStats(late_after=0.010)
    stats.on_packet(0, 0, 172, 0.0)
    stats.on_packet(1, 160, 172, 0.035)
    assert stats.late == 1


def test_silence_gap_with_matching_timestamps_is_not_late() -> None:
    stats = LegStats()
    stats.on_packet(0, 0, 172, 0.0)
    stats.on_packet(1, 160 * 100, 172, 2.0)  # 2 s of silence suppression
    assert stats.late == 0


def test_srtp_auth_failures_are_counted() -> None:
    stats = LegStats()
    stats.on_srtp_auth_failure()
    stats.on_srtp_auth_failure()
    assert stats.snapshot().srtp_auth_failures == 2
    assert stats.packets == 0


def test_snapshot_records_first_and_last_arrival() -> None:
    stats = LegStats()
    feed(stats, [5, 6, 7])
    snap = stats.snapshot()
    assert snap.first_arrival == 0.0
    assert snap.last_arrival == pytest.approx(0.04)


def test_clock_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LegStats(0)
