"""Media port allocation: even RTP / odd RTCP pairs, rtcp-mux, quarantine, errors."""

from __future__ import annotations

import pytest

from trunkline.media.ports import (
    DEFAULT_QUARANTINE,
    PortAllocation,
    PortAllocator,
    PortReleaseError,
    PortsExhausted,
)


def test_default_range_allocates_even_rtp_and_odd_rtcp_from_10000() -> None:
    ports = PortAllocator()
    first = ports.allocate(0.0)
    assert first == PortAllocation(10000, 10001)
    assert first.ports == (10000, 10001)
    assert not first.rtcp_mux
    assert ports.allocate(0.0) == PortAllocation(10002, 10003)
    # 10000..59998 even bases, each with its odd partner inside 10000-60000.
    assert ports.capacity == 25000


def test_rtcp_mux_allocates_a_single_even_port() -> None:
    ports = PortAllocator(20000, 20009)
    alloc = ports.allocate(0.0, rtcp_mux=True)
    assert alloc == PortAllocation(20000, None)
    assert alloc.rtcp_mux
    assert alloc.ports == (20000,)
    ports.allocate(0.0)
    assert ports.in_use == 2
    assert ports.ports_in_use == 3


def test_odd_bounds_keep_pairs_inside_the_range() -> None:
    ports = PortAllocator(10001, 10006)
    assert ports.capacity == 2
    assert [ports.allocate(0.0).rtp for _ in range(2)] == [10002, 10004]
    with pytest.raises(PortsExhausted):
        ports.allocate(0.0)


def test_exhaustion_raises_a_clear_error() -> None:
    ports = PortAllocator(30000, 30003)
    a = ports.allocate(0.0)
    ports.allocate(0.0)
    ports.release(a, 1.0)
    with pytest.raises(PortsExhausted, match=r"30000-30003: 1 in use, 1 in quarantine"):
        ports.allocate(2.0)


def test_released_pair_is_quarantined_until_the_time_passes() -> None:
    ports = PortAllocator(30000, 30001, quarantine=30.0)
    a = ports.allocate(0.0)
    ports.release(a, 10.0)
    assert (ports.in_use, ports.quarantined, ports.available) == (0, 1, 0)
    with pytest.raises(PortsExhausted):
        ports.allocate(39.999)
    assert ports.allocate(40.0) == a
    assert (ports.in_use, ports.quarantined) == (1, 0)


def test_released_pair_goes_to_the_back_of_the_line() -> None:
    ports = PortAllocator(30000, 30005, quarantine=0.0)
    a = ports.allocate(0.0)
    ports.allocate(0.0)
    ports.release(a, 0.0)
    assert ports.allocate(0.0).rtp == 30004
    assert ports.allocate(0.0) == a


def test_default_quarantine_applies() -> None:
    ports = PortAllocator(30000, 30001)
    ports.release(ports.allocate(0.0), 0.0)
    with pytest.raises(PortsExhausted):
        ports.allocate(DEFAULT_QUARANTINE - 0.001)
    ports.allocate(DEFAULT_QUARANTINE)


def test_double_release_is_rejected() -> None:
    ports = PortAllocator(30000, 30009)
    a = ports.allocate(0.0)
    ports.release(a, 0.0)
    with pytest.raises(PortReleaseError, match="port 30000: already released"):
        ports.release(a, 1.0)


def test_double_release_after_quarantine_is_rejected() -> None:
    ports = PortAllocator(30000, 30009, quarantine=1.0)
    a = ports.allocate(0.0)
    ports.release(a, 0.0)
    with pytest.raises(PortReleaseError, match="port 30000: not allocated"):
        ports.release(a, 5.0)


def test_release_of_a_never_allocated_port_in_range_is_rejected() -> None:
    ports = PortAllocator(30000, 30009)
    with pytest.raises(PortReleaseError, match="not allocated"):
        ports.release(PortAllocation(30004, 30005), 0.0)


@pytest.mark.parametrize(
    "foreign",
    [PortAllocation(29998, 29999), PortAllocation(30010, 30011), PortAllocation(30001, None)],
)
def test_foreign_ports_are_rejected(foreign: PortAllocation) -> None:
    ports = PortAllocator(30000, 30009)
    ports.allocate(0.0)
    with pytest.raises(PortReleaseError, match="was not allocated here"):
        ports.release(foreign, 0.0)
    assert ports.in_use == 1


def test_release_with_the_wrong_rtcp_shape_is_rejected() -> None:
    ports = PortAllocator(30000, 30009)
    a = ports.allocate(0.0, rtcp_mux=True)
    with pytest.raises(PortReleaseError, match="with rtcp-mux"):
        ports.release(PortAllocation(a.rtp, a.rtp + 1), 0.0)
    b = ports.allocate(0.0)
    with pytest.raises(PortReleaseError, match="without rtcp-mux"):
        ports.release(PortAllocation(b.rtp, None), 0.0)
    assert ports.in_use == 2


def test_clock_going_backwards_is_an_error() -> None:
    ports = PortAllocator(30000, 30009)
    ports.allocate(5.0)
    with pytest.raises(ValueError, match="clock went backwards"):
        ports.allocate(4.0)


@pytest.mark.parametrize(
    ("low", "high"), [(0, 100), (100, 70000), (200, 100), (30001, 30002), (30000, 30000)]
)
def test_invalid_ranges_are_rejected(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(low, high)


def test_negative_quarantine_is_rejected() -> None:
    with pytest.raises(ValueError):
        PortAllocator(quarantine=-1.0)


def test_ports_in_use_are_never_handed_out_twice_over_many_calls() -> None:
    ports = PortAllocator(40000, 40019, quarantine=2.0)
    live: list[PortAllocation] = []
    now = 0.0
    for step in range(500):
        now += 0.5
        if len(live) >= 6:
            ports.release(live.pop(0), now)
        alloc = ports.allocate(now, rtcp_mux=step % 3 == 0)
        assert alloc.rtp not in {a.rtp for a in live}
        live.append(alloc)
        assert ports.in_use == len(live)
        assert ports.in_use + ports.quarantined + ports.available == ports.capacity
