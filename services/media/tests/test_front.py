"""Routing of calls to relay workers (front.py), without processes."""

from __future__ import annotations

import itertools

import pytest

from trunkline.media.front import split_ports, worker_for


def test_split_ports_gives_each_worker_disjoint_even_aligned_pairs() -> None:
    ranges = split_ports(10000, 60000, 3)
    assert ranges[0][0] == 10000 and ranges[-1][1] <= 60000
    for low, high in ranges:
        assert low % 2 == 0 and high % 2 == 1
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert low == high + 1
    sizes = [high - low + 1 for low, high in ranges]
    assert max(sizes) - min(sizes) <= 2


def test_split_ports_starts_on_an_even_port_for_an_odd_minimum() -> None:
    assert split_ports(10001, 10010, 2) == [(10002, 10005), (10006, 10009)]


def test_split_ports_refuses_a_range_smaller_than_the_workers() -> None:
    with pytest.raises(ValueError, match="too small"):
        split_ports(10000, 10003, 3)


def test_a_call_always_goes_to_the_same_worker_and_calls_spread() -> None:
    owners = [worker_for(f"call-{n}@pbx", 4) for n in range(4000)]
    assert owners == [worker_for(f"call-{n}@pbx", 4) for n in range(4000)]
    counts = [owners.count(w) for w in range(4)]
    assert min(counts) > 800  # about 1000 each
    assert worker_for("\udcff-not-utf8", 2) in (0, 1)
